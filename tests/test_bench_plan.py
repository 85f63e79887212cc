"""Pure parts of the fan-out benchmark: plans, publisher spreading, percentiles."""

from bench.fanout_plan import (
    LOCAL_ADDRESSES, SOURCE_PORTS, port_slice,
    PRESETS, PUB_RATE_MAX, Workload, final_offsets, percentile, plan, publishers_for, room_names,
)


def test_concert_publishers_stay_under_the_default_rate_limit():
    w = Workload("concert", 10_000, 1, 20.0, 30.0)
    pubs = publishers_for(w, room_names(w, "t"))
    assert len(pubs) == 4 and all(p.rate <= PUB_RATE_MAX for p in pubs)
    assert sum(p.rate for p in pubs) == 20.0


def test_many_rooms_every_room_has_one_publisher_at_one_msg_per_s():
    w = Workload("rooms", 1_000, 10, 1.0, 30.0)
    pubs = publishers_for(w, room_names(w, "t"))
    rooms = [r for p in pubs for r in p.rooms]
    assert sorted(rooms) == sorted(room_names(w, "t"))
    assert all(p.rate == len(p.rooms) * 1.0 <= PUB_RATE_MAX for p in pubs)


def test_plan_spreads_fans_over_workers_and_rooms():
    w = Workload("rooms", 1_000, 10, 1.0, 30.0)
    plans = plan(w, 3, "t")
    assert sum(len(p.fans) for p in plans) == 1_000
    assert {i for p in plans for i, _ in p.fans} == set(range(1_000))
    per_room = {}
    for p in plans:
        for _, room in p.fans:
            per_room[room] = per_room.get(room, 0) + 1
    assert set(per_room.values()) == {100}


def test_percentile_is_the_upper_edge_of_the_bucket_holding_the_rank():
    hist = {0: 50, 9: 49, 99: 1}  # 0.1 ms buckets
    assert percentile(hist, 0.5, 0.1) == 0.1
    assert percentile(hist, 0.99, 0.1) == 1.0
    assert percentile(hist, 1.0, 0.1) == 10.0
    assert percentile({}, 0.5, 0.1) is None


def test_final_offsets_take_the_highest_ack_per_room():
    assert final_offsets([{"rooms": {"a": 3, "b": 9}}, {"rooms": {"a": 7}}]) == {"a": 7, "b": 9}


def test_presets_keep_every_process_under_the_fd_limit():
    for p in PRESETS.values():
        biggest = max(w.fans for w in p.workloads)
        assert biggest / p.replicas < 20_000 and biggest / p.workers < 20_000


def test_source_port_slices_are_disjoint_and_hold_a_100k_run():
    slices = [port_slice(w, 8) for w in range(8)]
    assert slices[0]["port_lo"] == SOURCE_PORTS[0] and slices[-1]["port_hi"] <= SOURCE_PORTS[1]
    for a, b in zip(slices, slices[1:]):
        assert a["port_hi"] <= b["port_lo"]
    # Each worker holds 100k/8 sockets spread over the source addresses.
    per_worker = (slices[0]["port_hi"] - slices[0]["port_lo"]) * len(LOCAL_ADDRESSES)
    assert per_worker >= 100_000 / 8


def test_publishers_of_one_room_are_out_of_phase_so_the_room_gets_a_steady_stream():
    w = Workload("concert", 10_000, 1, 20.0, 30.0)
    pubs = publishers_for(w, room_names(w, "t"))
    # Message k of publisher p is due at phase + k / rate: together one every 1/R s.
    due = sorted(round(p.phase_s + k / p.rate, 6) for p in pubs for k in range(10))
    gaps = {round(b - a, 6) for a, b in zip(due, due[1:])}
    assert gaps == {round(1 / w.rate, 6)}
