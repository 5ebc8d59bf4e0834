//! `supply`: the command line; everything else is in the library.

fn main() {
    std::process::exit(supply::cli::main_with_args());
}
