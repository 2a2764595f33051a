use std::sync::Arc;

use hdf5_reader::error::Error as H5Error;
use hdf5_reader::{Storage, StorageBuffer};
use zarrstac_io::{BlockingReader, IoError};

/// hdf5-reader's storage hook over our block-cached object-store reader.
pub(crate) struct ObjectStorage(pub Arc<BlockingReader>);

impl Storage for ObjectStorage {
    fn len(&self) -> u64 {
        self.0.size()
    }

    fn read_range(&self, offset: u64, len: usize) -> hdf5_reader::error::Result<StorageBuffer> {
        match self.0.read(offset, len as u64) {
            Ok(bytes) => {
                let n = bytes.len();
                StorageBuffer::from_shared_owner(Arc::new(bytes), 0, n)
            }
            Err(IoError::OutOfBounds { offset, size, .. }) => Err(H5Error::UnexpectedEof {
                offset,
                needed: len as u64,
                available: size.saturating_sub(offset),
            }),
            Err(e) => Err(H5Error::Io(std::io::Error::other(e.to_string()))),
        }
    }
}
