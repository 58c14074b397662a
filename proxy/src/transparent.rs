//! Transparent HTTPS: read the ClientHello's SNI, decide, and splice the
//! untouched TLS connection to where the client was going. TLS is never
//! terminated, so there is no block page: a blocked or malformed connection is
//! closed, and the event says why. (Readable HTTPS block pages need TLS
//! inspection, or the DNS filter answering the block page's address.)

use std::sync::Arc;

use schoolgate_events::Source;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::debug;

use crate::error::{ConnectError, Fault, ProxyError};
use crate::proxy::{ConnInfo, Proxy, apply_verdict, record_malformed_tls};
use crate::stats::Counters;
use crate::tunnel::{self, FirstBytes};

pub(crate) async fn serve_tls(proxy: Arc<Proxy>, conn: Arc<ConnInfo>, mut client: TcpStream) {
    let view = proxy.view();
    let mut ctx = proxy.new_context(&view, &conn, Source::Transparent);
    ctx.event.method = "TLS".to_owned();
    let mut first = Vec::new();
    let read = tokio::select! {
        _ = conn.shutdown.cancelled() => return,
        r = tunnel::read_hello(&mut client, &mut first, view.limits.header_timeout) => r,
    };
    Counters::inc(&proxy.stats.requests);
    Counters::inc(&proxy.stats.transparent_tls);
    let hello = match read {
        FirstBytes::Hello(h) => h,
        FirstBytes::Closed | FirstBytes::Timeout if first.is_empty() => return,
        FirstBytes::NotTls => {
            record_malformed_tls(&mut ctx.event, "not TLS");
            proxy.stats.error(Fault::Client);
            proxy.log(ctx, first.len() as u64, 0);
            return;
        }
        FirstBytes::Malformed(why) => {
            record_malformed_tls(&mut ctx.event, why);
            proxy.stats.error(Fault::Client);
            proxy.log(ctx, first.len() as u64, 0);
            return;
        }
        FirstBytes::Closed | FirstBytes::Timeout => {
            record_malformed_tls(&mut ctx.event, "incomplete ClientHello");
            ctx.event.status = 408;
            proxy.stats.error(Fault::Client);
            proxy.log(ctx, first.len() as u64, 0);
            return;
        }
    };
    // Decide on the SNI; without one, on the address the client was going to.
    let host = match (&hello.sni, conn.original_dst) {
        (Some(sni), _) => sni.clone(),
        (None, Some(dst)) => dst.ip().to_string(),
        (None, None) => {
            record_malformed_tls(&mut ctx.event, "no SNI and no original destination");
            proxy.log(ctx, first.len() as u64, 0);
            return;
        }
    };
    ctx.event.host.clone_from(&host);

    let client_info = view.policy.client(conn.peer.ip(), None);
    ctx.event.school = client_info.school.to_string();
    if let Some(d) = &client_info.device {
        ctx.event.device = Some(d.to_string());
    }
    ctx.event.role = view.policy.role(client_info.role).name.to_string();
    if !client_info.known {
        Counters::inc(&proxy.stats.unknown_clients);
        fail(
            &proxy,
            ctx,
            ProxyError::UnknownClient(conn.peer.ip()),
            first.len(),
        );
        return;
    }
    let role = client_info.role;
    ctx.role = Some(role);
    let request = schoolgate_classifier::Request::host(role, &host, ctx.event.time);
    let mut verdict = view.policy.decide(&request);
    proxy.hooks().verdict(&ctx, &mut verdict);
    apply_verdict(&mut ctx.event, &verdict);
    let blocked = verdict.is_blocked();
    ctx.verdict = Some(verdict);
    if blocked {
        ctx.event.status = 403;
        proxy.log(ctx, first.len() as u64, 0);
        return;
    }

    // Where to: the redirected destination, else the SNI name on 443.
    let restricted = view.is_restricted(role);
    let dialed = match conn.original_dst {
        Some(dst) => proxy.dialer.connect_addrs(&[dst], restricted).await,
        None => proxy.dialer.connect(&host, 443, restricted).await,
    };
    let mut upstream = match dialed {
        Ok(s) => s,
        Err(e) => {
            fail(&proxy, ctx, ProxyError::Connect(e), first.len());
            return;
        }
    };
    if upstream.write_all(&first).await.is_err() {
        let e = ProxyError::Upstream("upstream closed before the ClientHello".into());
        fail(&proxy, ctx, e, first.len());
        return;
    }
    ctx.event.status = 200;
    Counters::inc(&proxy.stats.active_tunnels);
    let (up, down, end) =
        tunnel::splice(client, upstream, view.limits.idle_timeout, &conn.shutdown).await;
    Counters::dec(&proxy.stats.active_tunnels);
    debug!(host, ?end, "transparent TLS tunnel ended");
    proxy.log(ctx, up + first.len() as u64, down);
}

fn fail(proxy: &Arc<Proxy>, mut ctx: crate::hooks::RequestContext, err: ProxyError, up: usize) {
    proxy.stats.error(err.fault());
    if err.fault() == Fault::Client {
        ctx.event.action = schoolgate_classifier::Action::Block;
    }
    ctx.event.status = err.status().as_u16();
    ctx.event.rule = match &err {
        ProxyError::UnknownClient(_) => "unknown client",
        ProxyError::Connect(ConnectError::Internal { .. }) => "internal network",
        ProxyError::Connect(ConnectError::Loop { .. }) => "request loop",
        _ => "upstream error",
    }
    .to_owned();
    ctx.event.reason = err.to_string();
    proxy.log(ctx, up as u64, 0);
}
