//! Client-side rate limiting of the Kubernetes client, as client-go's token bucket does it for
//! `--kube-api-qps` and `--kube-api-burst`: `burst` requests may go at once, then `qps` a second.
//! A request waits for its token before it is sent (a watch takes one token when it starts).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use sim_common::TokenBucket;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

/// The tower layer; every client built from one layer shares its bucket.
#[derive(Debug, Clone)]
pub struct QpsLayer {
    bucket: Arc<Mutex<TokenBucket>>,
}

impl QpsLayer {
    pub fn new(qps: f32, burst: u32) -> Self {
        Self {
            bucket: Arc::new(Mutex::new(TokenBucket::new(
                f64::from(qps),
                burst.max(1),
                Instant::now().into_std(),
            ))),
        }
    }
}

impl<S> Layer<S> for QpsLayer {
    type Service = Qps<S>;

    fn layer(&self, inner: S) -> Qps<S> {
        Qps {
            inner,
            bucket: self.bucket.clone(),
            wait: None,
            holds_token: false,
        }
    }
}

/// A service that is ready only once it holds a token.
pub struct Qps<S> {
    inner: S,
    bucket: Arc<Mutex<TokenBucket>>,
    wait: Option<Pin<Box<Sleep>>>,
    holds_token: bool,
}

impl<S, R> Service<R> for Qps<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        while !self.holds_token {
            if let Some(w) = self.wait.as_mut() {
                if w.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.wait = None;
            }
            let taken = self
                .bucket
                .lock()
                .expect("token bucket lock")
                .try_take(Instant::now().into_std());
            match taken {
                Ok(()) => self.holds_token = true,
                Err(after) => self.wait = Some(Box::pin(tokio::time::sleep(after))),
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        self.holds_token = false;
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn the_layer_spaces_requests_by_qps_after_the_burst() {
        use tower::ServiceExt as _;
        let layer = QpsLayer::new(10.0, 2);
        let svc =
            tower::service_fn(|_: ()| async { Ok::<_, std::convert::Infallible>(Instant::now()) });
        let mut svc = layer.layer(svc);
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..5 {
            at.push(svc.ready().await.unwrap().call(()).await.unwrap() - start);
        }
        let ms: Vec<u128> = at.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [0, 0, 100, 200, 300]);
    }
}
