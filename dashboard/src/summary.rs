//! (being written)
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::app::App;

pub fn routes() -> Router<App> {
    Router::new()
}

#[derive(Debug, Default)]
pub struct Cache {}

impl Cache {
    pub fn clear(&self) {}
}

pub async fn keep_warm(_app: App, _shutdown: CancellationToken) {}
