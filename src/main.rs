/// mimalloc rather than the system allocator: see the note on the dependency in Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    meridian::alloc::configure();
    meridian::cli::run()
}
