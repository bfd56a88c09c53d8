//! Soak: many authenticated connections held with ticks, churn and RPCs.

use clap::Args;

use crate::{BenchError, Ctx};

#[derive(Args, Debug)]
pub struct SoakArgs {}

pub async fn run(_ctx: &Ctx, _args: SoakArgs) -> Result<(), BenchError> {
    Err(BenchError::Usage("soak: not built yet".into()))
}
