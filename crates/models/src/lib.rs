//! The model zoo, in Burn.
//!
//! [`Net`] is a DAG of named layers whose ids follow torchvision's module paths, each carrying a
//! pure-data [`LayerSpec`] (kind, hyper-parameters, shapes, FLOPs, parameters, output bytes).
//! [`zoo`] builds LeNet-5 and six torchvision architectures exactly. `Net` implements
//! [`partition_core::LayerGraph`], so every solver works on it directly.
//!
//! [`Model`] puts a `Net` and its [`Weights`] (seeded, or under torchvision's key names) on a
//! Burn device chosen by [`Backend`], and runs it whole ([`Model::forward`]), split at a [`Cut`]
//! ([`Model::run_edge`], [`Model::run_cloud`]), or any node set at all ([`Model::run_part`]).

mod backend;
mod error;
mod exec;
mod fusion;
mod input;
mod kernels;
mod layer;
mod net;
mod npy;
mod profile;
mod spec;
mod tensor;
mod weights;
mod weights_file;
pub mod zoo;

pub use backend::Backend;
pub use error::ModelError;
pub use exec::{
    Activations, BLOCKED_LARGEST_PLANE, Model, PIN_THREADS_VAR, Pinning, pin_global_pool,
};
pub use fusion::{FusedActivation, Fusion};
pub use input::{
    IMAGENET_CLASS_COUNT, IMAGENET_MEAN, IMAGENET_STD, MAX_IMAGE_SIDE, SAMPLE_JPEG, decode_image,
    image_dimensions, imagenet_class, imagenet_classes, load_image, preprocess, seeded_input,
    top_k,
};
pub use kernels::{ConvKernel, ConvRun, Kernels, VECTOR_PATH_VAR, VectorPath};
pub use layer::{LayerKind, LayerSpec, ParamTensor, Shape};
pub use net::{Cut, INPUT_ID, Net, NetBuilder, Node};
pub use npy::{load_npy, read_npy, save_npy, write_npy};
pub use profile::{CacheScrub, KERNEL_REVISION, LayerTiming, last_level_cache_bytes, median};
pub use spec::{NetSpec, SpecNode};
pub use tensor::{HostTensor, Value, relative_difference};
pub use weights::{Weights, expected_keys};
pub use weights_file::{load_safetensors, read_safetensors, save_safetensors, write_safetensors};
