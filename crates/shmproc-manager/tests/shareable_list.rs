//! ShareableList: round trips of trailing NULs and multi-byte UTF-8 (a
//! property test), slots that refuse values too large, count/index, another
//! process setting items, a segment that is not a list.

use proptest::prelude::*;
use shmproc_manager::{Item, ShareableList, ShareableListError, SharedMemory};
use shmproc_process::Process;
use shmproc_testing::{TIMEOUT, TestShm, Watchdog};

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        Just(Item::None),
        any::<i64>().prop_map(Item::Int),
        any::<f64>()
            .prop_filter("NaN is not equal to itself", |f| !f.is_nan())
            .prop_map(Item::Float),
        any::<bool>().prop_map(Item::Bool),
        // Multi-byte UTF-8 and NULs anywhere, trailing ones included.
        ("[a-zé€𝄞\u{0}]{0,12}", 0usize..4).prop_map(|(s, nuls)| Item::Str(s + &"\0".repeat(nuls))),
        (proptest::collection::vec(any::<u8>(), 0..20), 0usize..4).prop_map(|(mut b, nuls)| {
            b.extend(std::iter::repeat_n(0, nuls));
            Item::Bytes(b)
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn round_trips(items in proptest::collection::vec(item(), 0..12), reset in item()) {
        let t = TestShm::new();
        let name = t.name("sl-prop");
        let sl = ShareableList::create(&name, items.clone()).expect("create");
        let other = ShareableList::open(&name).expect("open");
        prop_assert_eq!(other.to_vec().expect("read"), items.clone());
        prop_assert_eq!(other.len(), items.len());
        // Setting any item to a value that fits its slot reads back exactly.
        for (i, old) in items.iter().enumerate() {
            match other.set(i, reset.clone()) {
                Ok(()) => prop_assert_eq!(sl.get(i).expect("get"), reset.clone()),
                Err(ShareableListError::TooLarge { needed, capacity, .. }) => {
                    prop_assert!(needed > capacity);
                    prop_assert_eq!(&sl.get(i).expect("get"), old);
                }
                Err(e) => panic!("{e}"),
            }
        }
        drop((sl, other));
        prop_assert!(t.leftovers().is_empty());
    }
}

#[test]
fn fixed_slots_count_and_index() {
    let t = TestShm::new();
    let sl = ShareableList::create(
        &t.name("sl"),
        [
            Item::from("ab"),
            7i64.into(),
            Item::None,
            Item::from("ab"),
            true.into(),
        ],
    )
    .expect("create");
    assert_eq!(sl.count("ab").expect("count"), 2);
    assert_eq!(sl.index(Item::None).expect("index"), Some(2));
    assert_eq!(sl.index(false).expect("index"), None);
    assert_eq!(sl.slot_capacity(0).expect("cap"), 8);
    // Fits (8 bytes of UTF-8), a change of type included.
    sl.set(0, "é€12").expect("8 bytes fit");
    sl.set(2, 2.5).expect("a float in None's slot");
    assert_eq!(sl.get(2).expect("get"), Item::Float(2.5));
    match sl.set(0, "123456789") {
        Err(ShareableListError::TooLarge {
            index: 0,
            needed: 9,
            capacity: 8,
        }) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(sl.get(0).expect("unchanged"), Item::from("é€12"));
    assert!(matches!(
        sl.get(5),
        Err(ShareableListError::Index { index: 5, len: 5 })
    ));
    let roomy = ShareableList::create_with_slots(&t.name("sl2"), [""], 100).expect("create");
    roomy.set(0, "x".repeat(100)).expect("fits a 100-byte slot");
}

fn child_sets((name,): (String,)) {
    let sl = ShareableList::open(&name).expect("child open");
    sl.set(0, "от ребёнка\0").expect("set");
    sl.set(1, -5i64).expect("set");
}

#[test]
fn another_process_sets_items() {
    let _w = Watchdog::new(TIMEOUT);
    let t = TestShm::new();
    let name = t.name("slx");
    let sl = ShareableList::create_with_slots(&name, [Item::None, Item::None], 32).expect("create");
    let p = Process::new(child_sets, (name.clone(),));
    p.start().expect("start");
    assert_eq!(p.join_timeout(TIMEOUT).expect("join"), 0);
    assert_eq!(sl.get(0).expect("get"), Item::from("от ребёнка\0"));
    assert_eq!(sl.get(1).expect("get"), Item::Int(-5));
}

#[test]
fn a_block_that_is_not_a_list_is_refused() {
    let t = TestShm::new();
    let name = t.name("notlist");
    let shm = SharedMemory::create(&name, 64).expect("create");
    assert!(matches!(
        ShareableList::open(&name),
        Err(ShareableListError::Corrupt { .. })
    ));
    // A valid magic with a count that does not fit.
    shm.write(0, b"SHLIST01").expect("write");
    shm.write(8, &u64::MAX.to_le_bytes()).expect("write");
    assert!(matches!(
        ShareableList::open(&name),
        Err(ShareableListError::Corrupt { .. })
    ));
    // A slot capacity past the end.
    shm.write(8, &1u64.to_le_bytes()).expect("write");
    shm.write(24, &1000u32.to_le_bytes()).expect("write");
    assert!(matches!(
        ShareableList::open(&name),
        Err(ShareableListError::Corrupt { .. })
    ));
    // A bad tag in a valid table is an error at get.
    shm.write(24, &8u32.to_le_bytes()).expect("write");
    shm.write(16, &99u32.to_le_bytes()).expect("write");
    let sl = ShareableList::open(&name).expect("open");
    assert!(matches!(sl.get(0), Err(ShareableListError::Corrupt { .. })));
    shm.write(16, &4u32.to_le_bytes()).expect("write");
    shm.write(20, &9u32.to_le_bytes()).expect("write");
    assert!(
        matches!(sl.get(0), Err(ShareableListError::Corrupt { .. })),
        "len > cap"
    );
}
