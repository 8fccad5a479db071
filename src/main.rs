//! The `postern` binary; everything is in the library (src/lib.rs says how a request flows).

fn main() -> std::process::ExitCode {
    postern::main()
}
