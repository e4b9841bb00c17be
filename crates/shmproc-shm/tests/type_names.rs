//! Two programs that define the same `#[repr(C)]` struct, each in its own
//! module (or crate), share segments of it: the type check leaves module
//! paths out. A type of another name, size or alignment is still refused,
//! and the error names the type expected.

use shmproc_shm::{SegmentError, ShmSlice};
use shmproc_testing::TestShm;

mod program_a {
    #[repr(C)]
    #[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    pub(crate) struct Point {
        pub(crate) x: f64,
        pub(crate) y: f64,
    }
}

mod program_b {
    pub(crate) mod geometry {
        #[repr(C)]
        #[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        pub(crate) struct Point {
            pub(crate) x: f64,
            pub(crate) y: f64,
        }
    }

    #[repr(C)]
    #[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    pub(crate) struct Velocity {
        pub(crate) x: f64,
        pub(crate) y: f64,
    }
}

#[test]
fn the_same_struct_from_another_module_opens() {
    let shm = TestShm::new();
    let name = shm.name("points");
    let a = ShmSlice::create(&name, 2, program_a::Point { x: 1.0, y: 2.0 }).expect("create");
    let b = ShmSlice::<program_b::geometry::Point>::open(&name).expect("same name and layout");
    assert_eq!(
        b.get(1),
        Some(program_b::geometry::Point { x: 1.0, y: 2.0 })
    );
    drop(b);
    drop(a);
}

#[test]
fn another_name_of_the_same_layout_is_refused_and_named() {
    let shm = TestShm::new();
    let name = shm.name("points");
    let _a = ShmSlice::create(&name, 2, program_a::Point { x: 1.0, y: 2.0 }).expect("create");
    let e = ShmSlice::<program_b::Velocity>::open(&name).expect_err("another type");
    assert!(matches!(e, SegmentError::WrongType { .. }), "{e:?}");
    // Both types named: the one found (recorded by the creator) and the
    // one expected.
    let msg = e.to_string();
    assert!(msg.contains("holds `Point`"), "{msg}");
    assert!(msg.contains("Velocity"), "{msg}");
    let e = ShmSlice::<[f64; 2]>::open(&name).expect_err("an array is not a Point");
    assert!(matches!(e, SegmentError::WrongType { .. }), "{e:?}");
}
