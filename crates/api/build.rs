use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time: a build script binary reused from another checkout must not look in
    // that checkout's proto/.
    let proto_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "kv.proto",
        "auth.proto",
        "rpc.proto",
        "internal.proto",
        "lock.proto",
        "election.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={}", proto_dir.join(f).display());
    }
    let fds = protox::compile(files, [&proto_dir])?;
    write_client_rpcs(&fds)?;
    let mut json = pbjson_build::Builder::new();
    for file in &fds.file {
        json.register_file_descriptor(file.clone());
    }
    // etcd's gateway writes proto field names (create_revision, not createRevision).
    json.preserve_proto_field_names().build(&[
        ".mvccpb",
        ".authpb",
        ".etcdserverpb",
        ".v3lockpb",
        ".v3electionpb",
    ])?;
    tonic_prost_build::configure()
        .codec_path("crate::codec::SizedCodec")
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}

/// Every RPC clients may call (all services but the members' own `oxcdpb`), as
/// `("package.Service", "Method")`: the gRPC paths oxcd serves on its client URLs.
fn write_client_rpcs(
    fds: &prost_types::FileDescriptorSet,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut rpcs = Vec::new();
    for file in &fds.file {
        let package = file.package();
        if package == "oxcdpb" {
            continue;
        }
        for service in &file.service {
            for method in &service.method {
                rpcs.push(format!(
                    "    (\"{package}.{}\", \"{}\"),\n",
                    service.name(),
                    method.name()
                ));
            }
        }
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("client_rpcs.rs");
    std::fs::write(
        out,
        format!(
            "/// Every RPC clients may call, as (\"package.Service\", \"Method\").\npub const CLIENT_RPCS: &[(&str, &str)] = &[\n{}];\n",
            rpcs.concat()
        ),
    )?;
    Ok(())
}
