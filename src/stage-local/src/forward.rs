//! The port forward of an instance with its own network (see `netns`): runs in the
//! instance's network helper, inside the namespace. It accepts on a socket that listens
//! on this machine's loopback (sockets keep the network they were made in) and, for each
//! connection, opens one to `127.0.0.1:PORT` inside the namespace and copies both ways,
//! a thread per direction. When the app is not listening yet, the connection is closed
//! at once: a readiness probe sees no answer and tries again.

use std::io;
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::thread;

/// Forwards every connection to `listener` to `127.0.0.1:port` of this process's
/// network; returns only when accepting fails for good.
pub(crate) fn serve(listener: &TcpListener, port: u16) -> io::Result<()> {
    loop {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            // The peer gave up before the accept, or a signal came: not the listener's
            // fault.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        thread::spawn(move || {
            if let Ok(app) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
                let _ = splice(client, app);
            }
        });
    }
}

/// Copies `a` to `b` and `b` to `a` until both ends are done; each side's end of
/// input becomes the other's end of output.
fn splice(a: TcpStream, b: TcpStream) -> io::Result<()> {
    let (mut a_in, mut b_out) = (a.try_clone()?, b.try_clone()?);
    let upstream = thread::spawn(move || {
        let _ = io::copy(&mut a_in, &mut b_out);
        let _ = b_out.shutdown(Shutdown::Write);
    });
    let (mut b_in, mut a_out) = (b, a);
    let _ = io::copy(&mut b_in, &mut a_out);
    let _ = a_out.shutdown(Shutdown::Write);
    let _ = upstream.join();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// Bytes go both ways through the forward, and each side sees the other's end.
    #[test]
    fn forwards_both_ways_and_passes_on_the_end() {
        let app = TcpListener::bind("127.0.0.1:0").expect("bind");
        let app_port = app.local_addr().expect("addr").port();
        let front = TcpListener::bind("127.0.0.1:0").expect("bind");
        let front_port = front.local_addr().expect("addr").port();
        thread::spawn(move || serve(&front, app_port));
        let echo = thread::spawn(move || {
            let (mut s, _) = app.accept().expect("accept");
            let mut got = Vec::new();
            s.read_to_end(&mut got).expect("read to the client's end");
            s.write_all(&[got.as_slice(), b" back"].concat())
                .expect("write");
        });
        let mut c = TcpStream::connect(("127.0.0.1", front_port)).expect("connect");
        c.write_all(b"there").expect("write");
        c.shutdown(Shutdown::Write).expect("shutdown");
        let mut answer = String::new();
        c.read_to_string(&mut answer).expect("read");
        assert_eq!(answer, "there back");
        echo.join().expect("echo");
    }

    /// Nothing listens behind the forward: the client's connection is closed at once.
    #[test]
    fn closes_the_connection_when_nothing_listens_behind() {
        // Bound and not listening: connections are refused, and no test beside this one
        // can take the port while it is held.
        use rustix::net::{bind, getsockname, socket, AddressFamily, SocketType};
        let held = socket(AddressFamily::INET, SocketType::STREAM, None).expect("socket");
        bind(&held, &std::net::SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let closed = std::net::SocketAddr::try_from(getsockname(&held).expect("name"))
            .expect("inet")
            .port();
        let front = TcpListener::bind("127.0.0.1:0").expect("bind");
        let front_port = front.local_addr().expect("addr").port();
        thread::spawn(move || serve(&front, closed));
        let mut c = TcpStream::connect(("127.0.0.1", front_port)).expect("connect");
        c.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .expect("timeout");
        let mut buf = Vec::new();
        assert_eq!(c.read_to_end(&mut buf).map_or(0, |_| buf.len()), 0);
    }
}
