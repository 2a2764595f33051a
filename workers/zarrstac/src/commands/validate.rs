use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use zarrstac_stac::Validator;

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// STAC items, collections or catalogs (JSON files; directories are searched).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// JSON files under `path` (itself when a file), sorted.
pub fn collect(path: &PathBuf, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        entries.sort();
        for e in entries {
            if e.is_dir() || e.extension().is_some_and(|x| x == "json") {
                collect(&e, out);
            }
        }
    } else {
        out.push(path.clone());
    }
}

/// One line per problem; a closing count; exit 1 when anything is invalid.
pub fn run(args: ValidateArgs) -> ExitCode {
    let validator = Validator::new();
    let mut files = Vec::new();
    for f in &args.files {
        collect(f, &mut files);
    }
    let (mut valid, mut invalid) = (0, 0);
    for file in files {
        let doc: serde_json::Value = match std::fs::read(&file)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(d) => d,
            Err(e) => {
                println!("{}: not readable JSON: {e}", file.display());
                invalid += 1;
                continue;
            }
        };
        let is_stac = matches!(
            doc["type"].as_str(),
            Some("Feature" | "Collection" | "Catalog")
        ) && doc.get("stac_version").is_some();
        if !is_stac && args.files.iter().all(|a| a.is_dir()) {
            continue; // other JSON found while walking directories (references, ...)
        }
        let problems = validator.validate(&doc);
        if problems.is_empty() {
            valid += 1;
        } else {
            invalid += 1;
            for p in problems {
                println!("{}: {p}", file.display());
            }
        }
    }
    println!("{valid} passed, {invalid} failed");
    if invalid > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
