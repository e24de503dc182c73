pub mod counter;
pub mod report;
