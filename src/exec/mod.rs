//! Execution: the scheduler that runs the action DAG, and the sandboxes actions run in.
