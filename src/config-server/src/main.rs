//! `config-server`: the process; everything else is in the library.

fn main() -> std::process::ExitCode {
    config_server::main_with_env()
}
