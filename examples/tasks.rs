//! An application that runs a queue of inference tasks as `cutpoint-edge tasks` does: one
//! session per model against one cloud (here a cloud inside this process), a line per task as
//! it finishes, then the latency statistics.
//!
//! ```sh
//! cargo run --example tasks
//! ```

use models::Backend;
use runtime::tasks::{QueueConfig, TaskQueue, TaskRecord, random_tasks, task_networks};
use runtime::{CloudConfig, Costs, EdgeConfig, LoadedModel, LocalCloud, WeightsSource};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cloud = LocalCloud::start(CloudConfig::default(), &[])?;
    let tasks = random_tasks(12, &["lenet", "mobilenet_v2"], 7)?;
    let nets = task_networks(&tasks, &[])?;

    // Layer costs from FLOP counts: the edge computes 1 GFLOP/s, the cloud ten times as fast.
    // An application would price them with device profiles (`Costs::quick`, `set_profiles`).
    let mut costs = Costs::new();
    for net in &nets {
        let edge_ms: Vec<f64> = net
            .nodes()
            .iter()
            .map(|n| n.spec().flops as f64 / 1e6)
            .collect();
        let cloud_ms: Vec<f64> = edge_ms.iter().map(|ms| ms / 10.0).collect();
        costs.add_graph("FLOP counts", net.graph(&edge_ms, &cloud_ms)?)?;
    }
    let mut queue = TaskQueue::new(QueueConfig::default());
    for net in nets {
        let model = LoadedModel::load(net, &WeightsSource::default(), Backend::Flex)?;
        let (session, origin) = costs.session(model, EdgeConfig::default())?;
        queue.add(session, origin)?;
    }

    for warning in queue.connect(cloud.client_config()).await? {
        eprintln!("warning: {warning}");
    }
    println!("{}", TaskRecord::table_header());
    let report = queue.run(&tasks, |record| println!("{record}")).await?;
    println!("\n{}", report.summary);
    drop(queue);
    cloud.stop().await;
    Ok(())
}
