//! `--write-out=protobuf`: accepted as etcdctl accepts it; no response is printed this way
//! (auth and alarm answers fall back to their text, as the other formats' do).

use super::{Format, Printer};

pub struct Protobuf;

impl Printer for Protobuf {
    fn format(&self) -> Format {
        Format::Protobuf
    }
}
