//! The response of a Server-Sent Events endpoint: the records an actor queues, as they come.

use actix_web::web::Bytes;
use actix_web::HttpResponse;
use futures_util::stream;
use tokio::sync::mpsc;

/// `text/event-stream` from `rx`, uncached and unbuffered by proxies; it ends when the actor
/// writing into the channel stops.
pub fn response(rx: mpsc::Receiver<Bytes>) -> HttpResponse {
    let body = stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, std::convert::Infallible>(bytes), rx))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body)
}
