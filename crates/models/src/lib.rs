//! The model zoo, in Burn.
//!
//! This crate will own `Net`, a DAG of named layers whose ids follow torchvision's module paths;
//! the zoo (LeNet, AlexNet, VGG16, MobileNetV2, ResNet-18/50, GoogLeNet), model spec files, weights
//! I/O (safetensors, seeded initialisation), input decoding, and `run_part`, which executes any
//! node set from the boundary tensors it is handed. `Net` will implement
//! `partition_core::LayerGraph`, so every solver works on it directly.
//!
//! Status: not built yet; see the models issue in the tracker.
