use super::*;
use proptest::prelude::*;

fn b(v: Vec<u8>) -> Bytes {
    Bytes::from(v)
}

fn arb_bytes(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(b)
}

fn arb_version() -> impl Strategy<Value = Version> {
    (any::<u64>(), any::<[u8; 16]>()).prop_map(|(counter, writer)| Version { counter, writer })
}

fn arb_meta() -> impl Strategy<Value = SessionMeta> {
    (
        any::<u64>(),
        any::<i64>(),
        proptest::option::of(arb_bytes(20)),
        proptest::option::of(arb_bytes(20)),
    )
        .prop_map(
            |(creation_time, max_inactive_secs, principal, auth_type)| SessionMeta {
                creation_time,
                max_inactive_secs,
                principal,
                auth_type,
            },
        )
}

fn arb_image() -> impl Strategy<Value = SessionImage> {
    (
        arb_bytes(40),
        arb_version(),
        arb_meta(),
        (any::<u64>(), 0..=crate::session::model::MAX_LOST),
        proptest::collection::vec((arb_bytes(16), arb_bytes(64)), 0..6),
    )
        .prop_map(|(id, version, meta, (idle_ms, lost), attrs)| SessionImage {
            id,
            version,
            meta,
            idle_ms,
            lost,
            attrs,
        })
}

fn arb_op() -> impl Strategy<Value = AttrOp> {
    prop_oneof![
        (arb_bytes(16), arb_bytes(64)).prop_map(|(n, v)| AttrOp::Set(n, v)),
        arb_bytes(16).prop_map(AttrOp::Remove),
    ]
}

fn arb_message() -> impl Strategy<Value = Message> {
    let delta = (
        arb_bytes(40),
        arb_version(),
        arb_version(),
        proptest::collection::vec(arb_op(), 0..6),
        proptest::option::of(any::<i64>()),
        proptest::option::of(proptest::option::of(arb_bytes(10))),
        proptest::option::of(proptest::option::of(arb_bytes(10))),
    )
        .prop_map(|(id, base, version, ops, mi, p, a)| {
            Message::Delta(Delta {
                id,
                base,
                version,
                ops,
                meta: MetaChange {
                    max_inactive_secs: mi,
                    principal: p,
                    auth_type: a,
                },
            })
        })
        .boxed();
    let reason = prop_oneof![
        Just(CopyReason::Create),
        Just(CopyReason::Repair),
        Just(CopyReason::Rebalance),
        Just(CopyReason::Handoff),
        Just(CopyReason::Release)
    ];
    prop_oneof![
        delta.clone(),
        arb_bytes(40).prop_map(|id| Message::Access { id }),
        (reason, arb_image()).prop_map(|(reason, session)| Message::Copy { reason, session }),
        (arb_bytes(40), arb_version(), any::<bool>()).prop_map(|(id, version, e)| {
            Message::Remove {
                id,
                version,
                reason: if e {
                    RemoveReason::Expired
                } else {
                    RemoveReason::Invalidated
                },
            }
        }),
        (arb_bytes(40), arb_image()).prop_map(|(old, session)| Message::ChangeId { old, session }),
        (
            any::<u64>(),
            proptest::collection::vec(any::<[u8; 16]>(), 0..4),
            any::<u32>()
        )
            .prop_map(|(transfer, view, departures)| Message::StateRequest {
                transfer,
                view,
                departures
            }),
        (
            any::<u64>(),
            any::<u32>(),
            proptest::collection::vec(arb_image(), 0..4)
        )
            .prop_map(|(transfer, seq, sessions)| Message::StateChunk {
                transfer,
                seq,
                sessions
            }),
        (
            any::<u64>(),
            any::<u32>(),
            any::<u64>(),
            any::<u32>(),
            any::<bool>()
        )
            .prop_map(|(transfer, chunks, sessions, departures, leaving)| {
                Message::StateComplete {
                    transfer,
                    chunks,
                    sessions,
                    departures,
                    leaving,
                }
            }),
        (any::<u64>(), any::<u32>())
            .prop_map(|(transfer, seq)| Message::ChunkAck { transfer, seq }),
        (any::<u64>(), arb_bytes(40)).prop_map(|(fetch, id)| Message::FetchRequest { fetch, id }),
        (
            any::<u64>(),
            arb_bytes(40),
            proptest::option::of(arb_image())
        )
            .prop_map(|(fetch, id, session)| Message::FetchReply { fetch, id, session }),
        Just(Message::Leaving),
        (
            any::<u64>(),
            any::<bool>(),
            any::<bool>(),
            any::<u64>(),
            delta.clone()
        )
            .prop_map(|(req, create, check_base, creation_time, d)| {
                let Message::Delta(txn) = d else {
                    unreachable!("the delta strategy makes deltas")
                };
                Message::Forward {
                    req,
                    create,
                    check_base,
                    creation_time,
                    txn,
                }
            }),
        (any::<u64>(), arb_bytes(40), arb_bytes(40))
            .prop_map(|(req, old, new)| Message::ForwardChangeId { req, old, new }),
        (any::<u64>(), 0u8..5, any::<u32>()).prop_map(|(req, o, copies)| {
            let outcome = [
                ForwardOutcome::Acked,
                ForwardOutcome::Conflict,
                ForwardOutcome::Unacknowledged,
                ForwardOutcome::Unavailable,
                ForwardOutcome::NotFound,
            ][o as usize];
            Message::CommitResult {
                req,
                outcome,
                copies,
            }
        }),
    ]
}

proptest! {
    #[test]
    fn every_message_round_trips(m in arb_message()) {
        let enc = m.encode();
        let dec = Message::decode(&enc, &CodecLimits::default()).unwrap();
        prop_assert_eq!(dec, m);
    }

    #[test]
    fn every_truncation_is_refused_without_panic(m in arb_message()) {
        let enc = m.encode();
        for cut in 0..enc.len() {
            let r = Message::decode(&enc.slice(..cut), &CodecLimits::default());
            prop_assert!(r.is_err(), "prefix of {} bytes of {} decoded", cut, enc.len());
        }
    }

    #[test]
    fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut data = data;
        if data.len() >= 3 {
            data[0] = MAGIC;
            data[1] = CODEC_VERSION;
            data[2] %= 16;
        }
        let _ = Message::decode(&Bytes::from(data), &CodecLimits::default());
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let mut v = Message::Leaving.encode().to_vec();
    v.push(0);
    assert_eq!(
        Message::decode(&Bytes::from(v), &CodecLimits::default()),
        Err(DecodeError::TrailingBytes(1))
    );
}

#[test]
fn bad_magic_version_and_type_are_named() {
    let l = CodecLimits::default();
    assert_eq!(
        Message::decode(&Bytes::from_static(&[0, 1, 1]), &l),
        Err(DecodeError::BadMagic(0))
    );
    assert_eq!(
        Message::decode(&Bytes::from_static(&[MAGIC, 9, 1]), &l),
        Err(DecodeError::UnsupportedVersion(9))
    );
    assert_eq!(
        Message::decode(&Bytes::from_static(&[MAGIC, CODEC_VERSION, 200]), &l),
        Err(DecodeError::UnknownType(200))
    );
    // Version 1 had no loss count in a session image: refused by name.
    assert_eq!(
        Message::decode(&Bytes::from_static(&[MAGIC, 1, 3]), &l),
        Err(DecodeError::UnsupportedVersion(1))
    );
    assert_eq!(
        Message::decode(&Bytes::new(), &l),
        Err(DecodeError::Truncated)
    );
}

#[test]
fn oversized_id_is_refused_before_allocation() {
    let l = CodecLimits {
        max_id_len: 8,
        ..CodecLimits::default()
    };
    let m = Message::Access {
        id: Bytes::from_static(b"0123456789"),
    };
    assert_eq!(
        Message::decode(&m.encode(), &l),
        Err(DecodeError::TooLong {
            field: "session id",
            len: 10,
            limit: 8
        })
    );
}

#[test]
fn huge_declared_counts_and_lengths_do_not_allocate() {
    // A chunk claiming 2^40 sessions, and one claiming a million within the
    // limit but with no bytes behind them.
    let l = CodecLimits::default();
    let mut b = BytesMut::new();
    header(&mut b, T_STATE_CHUNK);
    put_varint(&mut b, 1);
    put_varint(&mut b, 0);
    put_varint(&mut b, 1 << 40);
    assert!(matches!(
        Message::decode(&b.clone().freeze(), &l),
        Err(DecodeError::TooLong {
            field: "sessions",
            ..
        })
    ));
    let mut b = BytesMut::new();
    header(&mut b, T_STATE_CHUNK);
    put_varint(&mut b, 1);
    put_varint(&mut b, 0);
    put_varint(&mut b, 1_000_000);
    assert_eq!(
        Message::decode(&b.freeze(), &l),
        Err(DecodeError::Truncated)
    );
    // An attribute value declaring u64::MAX bytes.
    let mut b = BytesMut::new();
    header(&mut b, T_ACCESS);
    put_varint(&mut b, u64::MAX);
    assert!(matches!(
        Message::decode(&b.freeze(), &l),
        Err(DecodeError::TooLong { .. })
    ));
}

#[test]
fn overlong_varint_is_refused() {
    let mut v = vec![MAGIC, CODEC_VERSION, T_STATE_REQUEST];
    v.extend_from_slice(&[0xff; 11]);
    assert!(matches!(
        Message::decode(&Bytes::from(v), &CodecLimits::default()),
        Err(DecodeError::Invalid(_))
    ));
}

#[test]
fn decoded_values_share_the_input_buffer() {
    let value = Bytes::from(vec![7u8; 1024]);
    let m = Message::Delta(Delta {
        id: Bytes::from_static(b"s1"),
        base: Version::default(),
        version: Version::default().next([1; 16]),
        ops: vec![AttrOp::Set(Bytes::from_static(b"a"), value)],
        meta: MetaChange::default(),
    });
    let enc = m.encode();
    let Message::Delta(d) = Message::decode(&enc, &CodecLimits::default()).unwrap() else {
        panic!("not a delta")
    };
    let AttrOp::Set(_, v) = &d.ops[0] else {
        panic!("not a set")
    };
    let range = enc.as_ptr() as usize..enc.as_ptr() as usize + enc.len();
    assert!(range.contains(&(v.as_ptr() as usize)), "value was copied");
}

#[test]
fn live_encoders_match_the_generic_encoder() {
    let now = Instant::now();
    let mut s = Session::new(
        Bytes::from_static(b"abc"),
        SessionMeta {
            creation_time: 5,
            max_inactive_secs: 30,
            principal: Some(Bytes::from_static(b"bob")),
            auth_type: None,
        },
        Version::default().next([3; 16]),
        now,
    );
    s.attrs
        .insert(Bytes::from_static(b"k"), Bytes::from_static(b"v"));
    s.lost = 3;
    let img = SessionImage::of(&s, now);
    assert_eq!(
        encode_copy(CopyReason::Handoff, &s, now),
        Message::Copy {
            reason: CopyReason::Handoff,
            session: img.clone()
        }
        .encode()
    );
    assert_eq!(
        encode_chunk(9, 2, &[&s], 0, now),
        Message::StateChunk {
            transfer: 9,
            seq: 2,
            sessions: vec![img.clone()]
        }
        .encode()
    );
    assert_eq!(
        encode_change_id(b"old", &s, now),
        Message::ChangeId {
            old: Bytes::from_static(b"old"),
            session: img.clone()
        }
        .encode()
    );
    assert_eq!(
        encode_fetch_reply(4, b"abc", Some(&s), now),
        Message::FetchReply {
            fetch: 4,
            id: Bytes::from_static(b"abc"),
            session: Some(img)
        }
        .encode()
    );
}

#[test]
fn a_loss_count_above_the_cap_decodes_as_the_cap() {
    let now = Instant::now();
    let mut s = Session::new(
        Bytes::from_static(b"abc"),
        SessionMeta::default(),
        Version::default().next([3; 16]),
        now,
    );
    s.lost = 200; // not a count this node makes: a hostile or newer sender
    let enc = encode_copy(CopyReason::Rebalance, &s, now);
    let Ok(Message::Copy { session, .. }) = Message::decode(&enc, &CodecLimits::default()) else {
        panic!("copy did not decode");
    };
    assert_eq!(session.lost, crate::session::model::MAX_LOST);
    assert_eq!(
        session.into_session(now).lost,
        crate::session::model::MAX_LOST
    );
}
