//! bitfit-repro: reproduce BitFit (Ben Zaken, Ravfogel, Goldberg, ACL 2022) with burn.
//!
//! Data flows one way: grid → runs → store → report. Modules, one per noun:
//! [`data`] (GLUE readers), [`squad`] (SQuAD: reader, windows, official EM/F1), [`tokenize`] (WordPiece), [`model`] (BERT in burn, HF loading),
//! [`finetune`] (methods and training), [`metrics`], [`settings`] (every run setting, defined once), [`grid`] (TOML grids → runs), [`store`]
//! (results on disk), [`delta`] (a run's trained tensors as a file), [`runner`] (grid × store → trained runs), [`inspect`] (parameter
//! accounting), [`hub`] (where models and data come from), [`backend`] (compute backends).

pub mod backend;
pub mod bench;
pub mod data;
pub mod delta;
pub mod finetune;
pub mod grid;
pub mod hub;
pub mod inspect;
pub mod metrics;
pub mod model;
pub mod predict;
pub mod report;
pub mod runner;
pub mod settings;
pub mod slurm;
pub mod squad;
pub mod store;
pub mod tokenize;
