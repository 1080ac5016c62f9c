//! The platform's access log: one line per HTTP request with its method, route pattern (never
//! the path itself: `/signin/{secret}` must not log the secret, and no query string is
//! logged), status and duration, at target `campuspay::access`; the same counted and timed in
//! `campuspay_http_requests_total` and `campuspay_http_request_duration_seconds`. A streamed answer (`/v1/events`)
//! is logged when its headers go out.

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use std::future::Future;
use std::time::Instant;

/// Runs `srv` for `req` and logs the answer.
pub fn log_request<S, B>(
    req: ServiceRequest,
    srv: &S,
) -> impl Future<Output = Result<ServiceResponse<B>, actix_web::Error>>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let started = Instant::now();
    let method = req.method().to_string();
    // A path that matches no route is named as such, not echoed.
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "(no route)".to_owned());
    let answer = srv.call(req);
    async move {
        let res = answer.await?;
        let status = res.status().as_u16();
        let secs = started.elapsed().as_secs_f64();
        crate::metrics::http_request(&method, &route, status, secs);
        log::info!(
            target: "campuspay::access",
            method = method.as_str(), route = route.as_str(), status = status,
            duration_ms = format!("{:.1}", secs * 1000.0).as_str();
            "{method} {route} {status} {:.1} ms", secs * 1000.0
        );
        Ok(res)
    }
}
