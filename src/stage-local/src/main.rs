//! `stage-local`: the command line; everything else is in the library.

fn main() {
    std::process::exit(stage_local::main_with_args());
}
