//! Waiting for the first of two futures, without tokio's `macros` feature.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;

/// Which of two raced futures finished.
pub(super) enum Either<A, B> {
    First(A),
    Second(B),
}

/// Resolves with whichever future finishes first, dropping the other;
/// `first` is polled first, so it wins when both are ready.
pub(super) async fn race<A: Future, B: Future>(
    first: A,
    second: B,
) -> Either<A::Output, B::Output> {
    let mut first = pin!(first);
    let mut second = pin!(second);
    poll_fn(|cx| {
        if let Poll::Ready(out) = first.as_mut().poll(cx) {
            return Poll::Ready(Either::First(out));
        }
        if let Poll::Ready(out) = second.as_mut().poll(cx) {
            return Poll::Ready(Either::Second(out));
        }
        Poll::Pending
    })
    .await
}
