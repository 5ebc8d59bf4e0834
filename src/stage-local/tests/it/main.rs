//! Integration tests: the real `stage-local` binary against temp dirs, with small
//! shell-script buildpacks and a python3 web app. One test binary for all (style.md).

mod bad_input;
mod docs;
mod images;
mod launching;
mod own_network;
mod podman;
mod processes;
mod several_sidecars;
mod staging;
mod support;
mod together;
