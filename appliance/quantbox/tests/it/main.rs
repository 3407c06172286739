//! Integration tests: the real `quantbox` binary, started on a free port
//! with a temporary data directory, driven over HTTP.

mod support;

mod accounts;
mod auth;
mod authz;
mod backtest;
mod backup;
mod bounds;
mod cli;
mod cluster;
mod cluster_import;
mod dashboard;
mod hosts;
mod http;
mod jobs;
mod market;
mod observability;
mod openapi_contract;
mod packaging;
mod plugins;
mod strategies;
mod trading;
mod ws;
