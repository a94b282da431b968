//! A client session store that keeps many TLS 1.3 tickets per server.
//!
//! rustls' own `ClientSessionMemoryCache` keeps 8 tickets per server, which
//! is right for a browser but not for a load generator with dozens of
//! concurrent connections to one server: while responses are in flight the
//! cache runs dry and handshakes silently fall back to full ones. This store
//! keeps up to `capacity` tickets and hands out the newest first (the one
//! the server is most likely to still remember).

use std::collections::VecDeque;
use std::sync::Mutex;

use rustls::NamedGroup;
use rustls::client::{ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls::pki_types::ServerName;

#[derive(Debug)]
pub struct TicketStore {
    capacity: usize,
    inner: Mutex<Inner>,
}

/// One load generator talks to one server, so one set of state is enough;
/// the server name is checked anyway so that a ticket is never offered to
/// another name.
#[derive(Debug, Default)]
struct Inner {
    server: Option<ServerName<'static>>,
    kx_hint: Option<NamedGroup>,
    tls12: Option<Tls12ClientSessionValue>,
    tls13: VecDeque<Tls13ClientSessionValue>,
}

impl TicketStore {
    pub fn new(capacity: usize) -> Self {
        TicketStore {
            capacity: capacity.max(1),
            inner: Mutex::default(),
        }
    }

    /// The state for `name`, forgetting another server's.
    fn for_server<'a>(inner: &'a mut Inner, name: &ServerName<'_>) -> &'a mut Inner {
        if inner.server.as_ref() != Some(&name.to_owned()) {
            *inner = Inner {
                server: Some(name.to_owned()),
                ..Inner::default()
            };
        }
        inner
    }
}

impl ClientSessionStore for TicketStore {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        let mut inner = self.inner.lock().unwrap();
        Self::for_server(&mut inner, &server_name).kx_hint = Some(group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        let inner = self.inner.lock().unwrap();
        (inner.server.as_ref() == Some(&server_name.to_owned()))
            .then_some(inner.kx_hint)
            .flatten()
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        let mut inner = self.inner.lock().unwrap();
        Self::for_server(&mut inner, &server_name).tls12 = Some(value);
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        let inner = self.inner.lock().unwrap();
        (inner.server.as_ref() == Some(&server_name.to_owned()))
            .then(|| inner.tls12.clone())
            .flatten()
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        let mut inner = self.inner.lock().unwrap();
        Self::for_server(&mut inner, server_name).tls12 = None;
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        let mut inner = self.inner.lock().unwrap();
        let state = Self::for_server(&mut inner, &server_name);
        if state.tls13.len() == self.capacity {
            state.tls13.pop_front();
        }
        state.tls13.push_back(value);
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        let mut inner = self.inner.lock().unwrap();
        Self::for_server(&mut inner, server_name).tls13.pop_back()
    }
}
