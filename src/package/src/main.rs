//! `package`: the command line; everything else is in the library.

fn main() {
    std::process::exit(package::main_with_args());
}
