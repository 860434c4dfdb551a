//! The floor of lgsp's own HTTP stack, for the load-test scenario
//! (benches/load/run.sh, BENCHMARKS.md): a reverse proxy built from the same
//! parts as lgsp's exchange path and doing nothing else. actix-web serves the
//! caller, lgsp's own registry client (`startup::registry_client`, default
//! pool settings) calls the registry, the answer is read whole (lgsp must read
//! it to check it) and passed back, with mimalloc as lgsp's allocator. No
//! authentication, rate limit, schema check, mapping or audit record.
//!
//! Set against nginx on the same upstream, it shows what the stack the design
//! fixes costs before lgsp does any work of its own; set against lgsp's
//! exchange, what that work costs.
//!
//! Usage: stack_floor PORT UPSTREAM_URL

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test or a benchmark stops at its first surprise")]

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Upstream {
    base: String,
    http: reqwest::Client,
}

/// Forwards a GET with its path, query and `Authorization` header, as the
/// nginx of the scenario does.
async fn forward(req: HttpRequest, up: web::Data<Upstream>) -> HttpResponse {
    let mut call = up.http.get(format!("{}{}", up.base, req.uri()));
    if let Some(auth) = req.headers().get("authorization") {
        call = call.header("authorization", auth.as_bytes());
    }
    let Ok(answer) = call.send().await else {
        return HttpResponse::BadGateway().finish();
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = answer.headers().get("content-type").map(|v| v.as_bytes().to_vec());
    let Ok(body) = answer.bytes().await else {
        return HttpResponse::BadGateway().finish();
    };
    let mut out = HttpResponse::build(status);
    if let Some(ct) = content_type {
        out.insert_header(("content-type", ct));
    }
    out.body(body)
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(port), Some(base)) = (args.get(1).and_then(|p| p.parse::<u16>().ok()), args.get(2)) else {
        eprintln!("usage: stack_floor PORT UPSTREAM_URL");
        std::process::exit(2);
    };
    let http = lgsp::startup::registry_client(&lgsp::config::UpstreamPoolSettings::default())
        .map_err(std::io::Error::other)?;
    let upstream = web::Data::new(Upstream { base: base.trim_end_matches('/').to_string(), http });
    actix_rt::System::new().block_on(async move {
        HttpServer::new(move || App::new().app_data(upstream.clone()).default_service(web::to(forward)))
            .bind(("127.0.0.1", port))?
            .run()
            .await
    })
}
