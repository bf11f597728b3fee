//! Compiles `proto/proctor/v1/*.proto` into Rust with tonic's prost builder,
//! plus a file descriptor set that server reflection serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // protoc comes from crates.io, so no system package is needed.
    // SAFETY: build scripts are single-threaded.
    unsafe {
        std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    let include = protoc_bin_vendored::include_path()?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);

    let mut protos: Vec<PathBuf> = std::fs::read_dir("proto/proctor/v1")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    protos.sort();

    // tonic's prost builder emits no rerun-if-changed lines of its own.
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=migrations");
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }

    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("proctor_descriptor.bin"))
        .compile_protos(&protos, &[PathBuf::from("proto"), include])?;
    Ok(())
}
