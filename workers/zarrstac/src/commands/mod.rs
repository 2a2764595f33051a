pub mod refs;
