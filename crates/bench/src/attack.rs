//! Attacks on loopback (brute force, connection exhaustion).

use clap::Args;

use crate::{BenchError, Ctx};

#[derive(Args, Debug)]
pub struct AttackArgs {}

pub async fn run(_ctx: &Ctx, _args: AttackArgs) -> Result<(), BenchError> {
    Err(BenchError::Usage("attack: not built yet".into()))
}
