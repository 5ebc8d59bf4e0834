//! `cf-entrypoint`: the command line; everything else is in the library.

fn main() {
    std::process::exit(cf_entrypoint::main_with_args());
}
