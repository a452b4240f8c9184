//! The tokio runtime webrtc-rs runs on: tokio itself, except that every UDP socket it wraps gets
//! buffers of [`UDP_SOCKET_BUFFER`] (webrtc-rs offers no setting for it).

use super::UDP_SOCKET_BUFFER;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tracing::debug;
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, Runtime,
    TokioRuntime,
};

/// Tokio runtime for webrtc-rs whose only change is larger UDP socket buffers.
#[derive(Debug)]
pub(super) struct SeedRuntime(pub(super) TokioRuntime);

impl Runtime for SeedRuntime {
    fn spawn(
        &self,
        future: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        self.0.spawn(future)
    }

    fn spawn_reactor(
        &self,
        reactor_pool_size: usize,
        future: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        self.0.spawn_reactor(reactor_pool_size, future)
    }

    fn wrap_udp_socket(
        &self,
        socket: std::net::UdpSocket,
    ) -> std::io::Result<Arc<dyn AsyncUdpSocket>> {
        let sock = socket2::SockRef::from(&socket);
        if let Err(e) = sock.set_recv_buffer_size(UDP_SOCKET_BUFFER) {
            debug!("SO_RCVBUF: {e}");
        }
        if let Err(e) = sock.set_send_buffer_size(UDP_SOCKET_BUFFER) {
            debug!("SO_SNDBUF: {e}");
        }
        debug!(
            rcvbuf = sock.recv_buffer_size().unwrap_or(0),
            sndbuf = sock.send_buffer_size().unwrap_or(0),
            "udp socket buffers"
        );
        self.0.wrap_udp_socket(socket)
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> std::io::Result<Arc<dyn AsyncTcpListener>> {
        self.0.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>,
    > {
        self.0.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'a>,
    > {
        self.0.resolve_host(host)
    }

    fn now(&self) -> std::time::Instant {
        self.0.now()
    }

    fn sleep(
        &self,
        duration: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
        self.0.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.0.interval(period)
    }

    fn block_on(&self, future: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>>) {
        self.0.block_on(future)
    }

    fn yield_now(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
        self.0.yield_now()
    }

    fn name(&self) -> &'static str {
        "shoal-tokio"
    }
}
