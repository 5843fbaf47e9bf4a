//! Bindgen output for every struct layout in slurm-headers/ (one module per
//! layout). All layouts are compiled into every build so that the unit tests can
//! read synthetic records of each; only `crate::target::LAYOUT`'s is used at run time.
#![allow(non_camel_case_types, non_upper_case_globals, non_snake_case, dead_code)]
#![allow(clippy::all)]

macro_rules! layout_modules {
    ($($module:ident => $file:literal),* $(,)?) => {
        $(pub mod $module {
            include!(concat!(env!("OUT_DIR"), "/", $file));
        })*
    };
}

layout_modules! {
    l22_05_8 => "layout_22_05_8.rs",
    l23_02_2 => "layout_23_02_2.rs",
    l23_02_7 => "layout_23_02_7.rs",
    l23_11_10 => "layout_23_11_10.rs",
    l24_05_8 => "layout_24_05_8.rs",
    l24_11_0 => "layout_24_11_0.rs",
    l24_11_3 => "layout_24_11_3.rs",
    l24_11_7 => "layout_24_11_7.rs",
    l25_05_8 => "layout_25_05_8.rs",
    l25_11_7 => "layout_25_11_7.rs",
    l26_05_3 => "layout_26_05_3.rs",
    l26_05_5 => "layout_26_05_5.rs",
}

/// The target release's structs taken from a configured Slurm source tree
/// (SLURM_SRC_DIR); replaces the slurm-headers/ layout at run time.
#[cfg(jk_layout_from_source)]
pub mod source {
    include!(concat!(env!("OUT_DIR"), "/layout_source.rs"));
}
