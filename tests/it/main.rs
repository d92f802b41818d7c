//! Integration tests: one binary (linking burn + polars once), one module per library noun.
mod common;
mod data;
mod delta;
mod diff_pruning;
mod e2e;
mod finetune;
mod grid;
mod inspect;
mod metrics;
mod model;
mod peft;
mod report;
mod roberta;
mod settings;
mod slurm;
mod squad;
mod tokenizer;
