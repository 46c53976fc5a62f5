//! The `vmmon` command: all behaviour lives in the library's `cli` module.

fn main() {
    std::process::exit(vmmon::cli::main(std::env::args_os().collect()));
}
