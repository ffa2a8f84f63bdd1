fn main() -> std::process::ExitCode {
    meridian::cli::run()
}
