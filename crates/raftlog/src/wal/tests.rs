use super::*;
use raft::Storage;

fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
    Entry {
        index,
        term,
        data: data.to_vec().into(),
        ..Default::default()
    }
}

fn write_some(dir: &Path, n: u64) -> PathBuf {
    let mut log = RaftLog::open(dir).expect("open");
    for i in 1..=n {
        log.append(&[entry(i, 1, format!("v{i}").as_bytes())])
            .expect("append");
        log.sync().expect("sync");
    }
    log.path()
}

#[test]
fn replays_after_reopen_and_overwrites_conflicts() {
    let d = tempfile::tempdir().expect("tempdir");
    write_some(d.path(), 5);
    let mut log = RaftLog::open(d.path()).expect("reopen");
    assert!(!log.is_fresh());
    assert_eq!(log.last_index(), 5);
    log.append(&[entry(4, 2, b"x")]).expect("append");
    log.sync().expect("sync");
    drop(log);
    let log = RaftLog::open(d.path()).expect("reopen");
    let st = log.storage();
    assert_eq!(st.last_index().ok(), Some(4));
    assert_eq!(st.term(4).ok(), Some(2));
}

/// Where the records end: the file is longer (space reserved ahead, zeros).
fn records_len(path: &Path) -> usize {
    let data = fs::read(path).expect("read");
    data.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1)
}

#[test]
fn torn_tail_is_truncated() {
    let d = tempfile::tempdir().expect("tempdir");
    let path = write_some(d.path(), 3);
    let len = records_len(&path);
    assert!(
        fs::metadata(&path).expect("meta").len() as usize > len,
        "space is reserved"
    );
    // The last record's final bytes never reached the disk.
    let mut data = fs::read(&path).expect("read");
    data[len - 3..len].fill(0);
    fs::write(&path, &data).expect("write");
    let mut log = RaftLog::open(d.path()).expect("reopen");
    assert_eq!(log.last_index(), 2);
    // Writing goes on where the valid records end.
    log.append(&[entry(3, 1, b"again")]).expect("append");
    log.sync().expect("sync");
    drop(log);
    let log = RaftLog::open(d.path()).expect("reopen twice");
    assert_eq!(log.last_index(), 3);
    assert_eq!(
        log.storage()
            .entries(3, 4, None, raft::GetEntriesContext::empty(false))
            .expect("entries")[0]
            .data,
        b"again".to_vec()
    );
}

/// Offsets of the records in a log file: (start, kind).
fn records(path: &Path) -> Vec<(usize, u8)> {
    let data = fs::read(path).expect("read");
    let mut out = Vec::new();
    let mut off = 0;
    while let Some(end) = valid_record_at(&data, off) {
        out.push((off, data[off + 8]));
        off = end;
    }
    out
}

#[test]
fn a_write_torn_in_its_middle_is_cut_off_whole() {
    let d = tempfile::tempdir().expect("tempdir");
    let path = write_some(d.path(), 3);
    let mut log = RaftLog::open(d.path()).expect("reopen");
    let many: Vec<Entry> = (4..=6).map(|i| entry(i, 1, &[b'x'; 3000])).collect();
    log.append(&many).expect("append");
    log.write(false).expect("write, no fsync");
    drop(log);
    // The crash kept the write's first and last pages, not the middle one.
    let entries: Vec<usize> = records(&path)
        .into_iter()
        .filter(|(_, kind)| *kind == ENTRY)
        .map(|(at, _)| at)
        .collect();
    let mut data = fs::read(&path).expect("read");
    data[entries[4] + 100..entries[4] + 2000].fill(0);
    fs::write(&path, &data).expect("write");

    let mut log = RaftLog::open(d.path()).expect("a torn write is no corruption");
    assert_eq!(log.last_index(), 3, "the torn write is dropped whole");
    log.append(&[entry(4, 1, b"again")]).expect("append");
    log.sync().expect("sync");
    drop(log);
    let log = RaftLog::open(d.path()).expect("reopen after writing on");
    assert_eq!(log.last_index(), 4);
}

#[test]
fn damage_under_a_later_fsync_is_refused() {
    let d = tempfile::tempdir().expect("tempdir");
    let path = write_some(d.path(), 5);
    // The second write's entry: writes 3 to 5 were fsynced after it.
    let entries: Vec<usize> = records(&path)
        .into_iter()
        .filter(|(_, kind)| *kind == ENTRY)
        .map(|(at, _)| at)
        .collect();
    let mut data = fs::read(&path).expect("read");
    data[entries[1] + HEADER + 1] ^= 0xff;
    fs::write(&path, &data).expect("write");
    let Err(err) = RaftLog::open(d.path()) else {
        panic!("must refuse")
    };
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
}

#[test]
fn corruption_in_the_middle_is_refused_naming_the_file() {
    let d = tempfile::tempdir().expect("tempdir");
    let path = write_some(d.path(), 3);
    let mut data = fs::read(&path).expect("read");
    data[HEADER + 2] ^= 0xff;
    fs::write(&path, &data).expect("write");
    let Err(err) = RaftLog::open(d.path()) else {
        panic!("must refuse")
    };
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("checksum mismatch"), "{msg}");
}

#[test]
fn a_damaged_length_in_the_middle_is_not_taken_for_a_torn_tail() {
    let d = tempfile::tempdir().expect("tempdir");
    let path = write_some(d.path(), 5);
    let mut data = fs::read(&path).expect("read");
    data[3] = 0x7f; // the first record now claims to run past the end of the file
    fs::write(&path, &data).expect("write");
    let Err(err) = RaftLog::open(d.path()) else {
        panic!("must refuse")
    };
    assert!(err.to_string().contains("runs past valid records"), "{err}");
}

#[test]
fn compaction_keeps_the_tail_across_reopen() {
    let d = tempfile::tempdir().expect("tempdir");
    write_some(d.path(), 10);
    let mut log = RaftLog::open(d.path()).expect("reopen");
    assert!(log.compact(7).expect("compact"));
    log.append(&[entry(11, 1, b"after")]).expect("append");
    log.sync().expect("sync");
    drop(log);
    let log = RaftLog::open(d.path()).expect("reopen");
    let st = log.storage();
    assert_eq!(st.first_index().ok(), Some(8));
    assert_eq!(st.last_index().ok(), Some(11));
    assert_eq!(st.term(7).ok(), Some(1));
    assert_eq!(generations(d.path()).expect("gens").len(), 1);
}

#[test]
fn restart_from_a_state_machine_ahead_of_the_log() {
    let d = tempfile::tempdir().expect("tempdir");
    write_some(d.path(), 5);
    let mut log = RaftLog::open(d.path()).expect("reopen");
    log.restart_from(8, 3, None).expect("restart");
    drop(log);
    let log = RaftLog::open(d.path()).expect("reopen");
    let st = log.storage();
    assert_eq!((log.first_index(), log.last_index()), (9, 8));
    assert_eq!(st.term(8).ok(), Some(3));
    assert_eq!(st.rl().hard_state.commit, 8);
}

#[test]
fn discard_after_drops_the_tail_across_reopen() {
    let d = tempfile::tempdir().expect("tempdir");
    write_some(d.path(), 10);
    let mut log = RaftLog::open(d.path()).expect("reopen");
    assert_eq!(log.discard_after(7).expect("discard"), 3);
    assert_eq!(log.discard_after(7).expect("nothing left"), 0);
    assert_eq!(log.last_index(), 7);
    log.append(&[entry(8, 2, b"new")]).expect("append");
    log.sync().expect("sync");
    drop(log);
    let log = RaftLog::open(d.path()).expect("reopen");
    assert_eq!((log.first_index(), log.last_index()), (1, 8));
    assert_eq!(log.storage().term(8).ok(), Some(2));
    assert_eq!(generations(d.path()).expect("gens").len(), 1);
}

#[test]
fn discard_after_refuses_below_a_compaction() {
    let d = tempfile::tempdir().expect("tempdir");
    write_some(d.path(), 10);
    let mut log = RaftLog::open(d.path()).expect("reopen");
    log.compact(5).expect("compact");
    assert!(log.discard_after(3).is_err());
    assert_eq!(log.last_index(), 10);
}

#[test]
fn compaction_after_a_memory_release_still_shrinks_the_file() {
    let d = tempfile::tempdir().expect("tempdir");
    write_some(d.path(), 10);
    let mut log = RaftLog::open(d.path()).expect("reopen");
    log.release_memory(8).expect("release");
    assert!(log.compact(5).expect("compact"));
    assert!(!log.compact(5).expect("compact again"));
    drop(log);
    let log = RaftLog::open(d.path()).expect("reopen");
    assert_eq!((log.first_index(), log.last_index()), (9, 10));
}

#[test]
fn released_memory_is_still_replayed_from_the_file() {
    let d = tempfile::tempdir().expect("tempdir");
    write_some(d.path(), 10);
    let mut log = RaftLog::open(d.path()).expect("reopen");
    log.release_memory(8).expect("release");
    assert_eq!(log.first_index(), 9);
    drop(log);
    let log = RaftLog::open(d.path()).expect("reopen");
    assert_eq!((log.first_index(), log.last_index()), (1, 10));
}

/// The space reserved ahead of the records is written zeros, not a file system reservation
/// (ext4 keeps fallocate'd blocks "unwritten" and converts them as records land: a metadata
/// write inside every fdatasync). Unwritten blocks read as a hole to SEEK_HOLE.
#[cfg(target_os = "linux")]
#[test]
fn the_space_reserved_ahead_is_written_not_left_to_the_file_system() {
    use std::os::fd::AsRawFd;
    let d = tempfile::tempdir().expect("tempdir");
    let path = write_some(d.path(), 3);
    let len = fs::metadata(&path).expect("meta").len();
    assert!(len >= PREALLOCATE, "space is reserved: {len}");
    let f = File::open(&path).expect("open");
    // SAFETY: lseek(2) on a descriptor owned by `f`, which outlives the call.
    let hole = unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_HOLE) };
    assert_eq!(
        hole as u64, len,
        "the file has a hole (or unwritten blocks) at {hole} of {len}"
    );
}
