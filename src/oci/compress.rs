//! Layer compression: `gzip` (default), `zstd` or `none`, chosen by the
//! `compression` attribute.
//!
//! gzip is the hot path of a cold build, so it runs on every core: the tar
//! stream is cut into fixed 1 MiB blocks and each block becomes one complete
//! gzip member (RFC 1952 §2.2: "A gzip file consists of a series of
//! members"), compressed by libdeflate at level 4 on a pool of worker threads.
//! The members are written in order, so the bytes depend on the block size,
//! the level and the backend, never on the thread count. Backend and level
//! were chosen by measurement (see `bench/layer/README.md`): libdeflate beats
//! flate2 with zlib-rs on speed and ratio, and its level 4 packs a 545 MB
//! tree 1.5× faster than level 6 into a layer 4% larger, still smaller than
//! the one umoci's default writes. Go's `compress/gzip` (docker, containerd,
//! skopeo, umoci), pigz, zlib and Python read multi-member streams.
//!
//! zstd runs single-threaded at level 3 (≈200 MB/s per core), whose output is
//! deterministic by construction.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use crate::oci::{media_types, OciError};

/// Bytes of tar per gzip member. Changing it changes every gzip digest.
pub const GZIP_BLOCK_SIZE: usize = 1 << 20;
/// libdeflate level. Changing it changes every gzip digest.
pub const GZIP_LEVEL: i32 = 4;
/// zstd level. Changing it changes every zstd digest.
pub const ZSTD_LEVEL: i32 = 3;

/// How a layer's tar is compressed (the `compression` attribute).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    None,
}

impl Compression {
    /// The layer media type of the OCI image spec
    /// (<https://github.com/opencontainers/image-spec/blob/v1.1.0/layer.md#gzip-media-types>).
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => media_types::LAYER_GZIP,
            Compression::Zstd => media_types::LAYER_ZSTD,
            Compression::None => media_types::LAYER_TAR,
        }
    }

    /// The compression of a layer media type, OCI or Docker; `None` for a
    /// media type that is not a layer.
    pub fn from_media_type(media_type: &str) -> Option<Compression> {
        match media_type {
            media_types::LAYER_GZIP
            | media_types::LAYER_NONDISTRIBUTABLE_GZIP
            | media_types::DOCKER_LAYER_GZIP
            | media_types::DOCKER_FOREIGN_LAYER_GZIP => Some(Compression::Gzip),
            media_types::LAYER_ZSTD | media_types::LAYER_NONDISTRIBUTABLE_ZSTD | media_types::DOCKER_LAYER_ZSTD => {
                Some(Compression::Zstd)
            }
            media_types::LAYER_TAR | media_types::LAYER_NONDISTRIBUTABLE_TAR | media_types::DOCKER_LAYER_TAR => {
                Some(Compression::None)
            }
            _ => None,
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::None => "none",
        })
    }
}

impl FromStr for Compression {
    type Err = OciError;

    fn from_str(text: &str) -> Result<Compression, OciError> {
        match text {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            "none" => Ok(Compression::None),
            other => Err(OciError::BadSetting {
                name: "compression",
                reason: format!("`{other}` is not `gzip`, `zstd` or `none`"),
            }),
        }
    }
}

/// A reader that decompresses a layer blob back into its tar stream.
pub fn decoder<'a, R: Read + 'a>(reader: R, compression: Compression) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(reader))),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(reader)?),
        Compression::None => Box::new(reader),
    })
}

/// A writer that compresses what it is given into `W`; call
/// [`Compressor::finish`] to flush the last block and get `W` back.
pub struct Compressor<W: Write> {
    inner: Inner<W>,
}

enum Inner<W: Write> {
    None(W),
    Gzip(ParallelGzip<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Compressor<W> {
    /// `threads` only sets how many gzip blocks are compressed at once; it
    /// never changes the output bytes.
    pub fn new(out: W, compression: Compression, threads: usize) -> io::Result<Compressor<W>> {
        let inner = match compression {
            Compression::None => Inner::None(out),
            Compression::Gzip => Inner::Gzip(ParallelGzip::new(out, threads.max(1))),
            Compression::Zstd => Inner::Zstd(zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?),
        };
        Ok(Compressor { inner })
    }

    pub fn finish(self) -> io::Result<W> {
        match self.inner {
            Inner::None(out) => Ok(out),
            Inner::Gzip(gzip) => gzip.finish(),
            Inner::Zstd(encoder) => encoder.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::None(out) => out.write(buf),
            Inner::Gzip(gzip) => gzip.write(buf),
            Inner::Zstd(encoder) => encoder.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        // A flush must not cut a gzip block short (that would change the
        // bytes), so it only reaches the plain and zstd writers.
        match &mut self.inner {
            Inner::None(out) => out.flush(),
            Inner::Gzip(_) => Ok(()),
            Inner::Zstd(encoder) => encoder.flush(),
        }
    }
}

/// One gzip member per [`GZIP_BLOCK_SIZE`] block of input, written into
/// `out` (whose allocation is reused from block to block).
fn gzip_member(compressor: &mut libdeflater::Compressor, block: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    out.resize(compressor.gzip_compress_bound(block.len()), 0);
    let len = compressor.gzip_compress(block, out).map_err(|error| io::Error::other(format!("{error:?}")))?;
    out.truncate(len);
    Ok(())
}

fn new_deflater() -> libdeflater::Compressor {
    libdeflater::Compressor::new(
        libdeflater::CompressionLvl::new(GZIP_LEVEL).expect("GZIP_LEVEL is a valid libdeflate level"),
    )
}

/// A block of tar and the buffer its gzip member is written into; both
/// travel back to be reused, so packing allocates a fixed set of buffers.
type Buffers = (Vec<u8>, Vec<u8>);
type Compressed = io::Result<Buffers>;
type Job = (Buffers, mpsc::SyncSender<Compressed>);

/// Blocks go to a pool of workers; their results are written in submission
/// order. At most two blocks per worker are in flight, so memory stays at a
/// few MiB per thread whatever the layer size.
struct ParallelGzip<W: Write> {
    out: W,
    block: Vec<u8>,
    written_any: bool,
    pool: Option<Pool>,
    pending: VecDeque<mpsc::Receiver<Compressed>>,
    max_pending: usize,
    inline: Option<libdeflater::Compressor>,
    /// Buffers back from finished blocks.
    spare: Vec<Buffers>,
}

struct Pool {
    jobs: Option<mpsc::Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    fn new(threads: usize) -> Pool {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let workers = (0..threads)
            .map(|_| {
                let receiver = Arc::clone(&receiver);
                std::thread::spawn(move || {
                    let mut compressor = new_deflater();
                    loop {
                        let job = receiver.lock().map(|receiver| receiver.recv());
                        let Ok(Ok(((block, mut member), reply))) = job else { break };
                        let result = gzip_member(&mut compressor, &block, &mut member).map(|()| (block, member));
                        let _ = reply.send(result);
                    }
                })
            })
            .collect();
        Pool { jobs: Some(sender), workers }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.jobs.take();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

impl<W: Write> ParallelGzip<W> {
    fn new(out: W, threads: usize) -> ParallelGzip<W> {
        let (pool, inline) = if threads > 1 { (Some(Pool::new(threads)), None) } else { (None, Some(new_deflater())) };
        ParallelGzip {
            out,
            block: Vec::with_capacity(GZIP_BLOCK_SIZE),
            written_any: false,
            pool,
            pending: VecDeque::new(),
            max_pending: 2 * threads,
            inline,
            spare: Vec::new(),
        }
    }

    fn submit(&mut self) -> io::Result<()> {
        let (mut next, mut member) =
            self.spare.pop().unwrap_or_else(|| (Vec::with_capacity(GZIP_BLOCK_SIZE), Vec::new()));
        next.clear();
        let block = std::mem::replace(&mut self.block, next);
        self.written_any = true;
        match (&self.pool, &mut self.inline) {
            (Some(pool), _) => {
                let (reply, result) = mpsc::sync_channel(1);
                let jobs = pool.jobs.as_ref().expect("the pool is open until dropped");
                jobs.send(((block, member), reply)).map_err(|_| io::Error::other("gzip worker pool stopped"))?;
                self.pending.push_back(result);
                while self.pending.len() > self.max_pending {
                    self.write_oldest()?;
                }
                Ok(())
            }
            (None, Some(compressor)) => {
                gzip_member(compressor, &block, &mut member)?;
                self.out.write_all(&member)?;
                self.spare.push((block, member));
                Ok(())
            }
            (None, None) => unreachable!("either a pool or an inline compressor"),
        }
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        if let Some(result) = self.pending.pop_front() {
            let (block, member) = result.recv().map_err(|_| io::Error::other("a gzip worker died"))??;
            self.out.write_all(&member)?;
            self.spare.push((block, member));
        }
        Ok(())
    }

    fn finish(mut self) -> io::Result<W> {
        // An empty input still becomes one (empty) member: a valid gzip file.
        if !self.block.is_empty() || !self.written_any {
            self.submit()?;
        }
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        self.pool.take();
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = GZIP_BLOCK_SIZE - self.block.len();
        let taken = room.min(buf.len());
        self.block.extend_from_slice(&buf[..taken]);
        if self.block.len() == GZIP_BLOCK_SIZE {
            self.submit()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compressible but not trivial: 3.5 blocks of pseudo-random words.
    fn sample() -> Vec<u8> {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let words = [&b"layer "[..], b"tar ", b"digest ", b"sha256 ", b"\n", b"berth ", b"\x00\x01\x02"];
        let mut out = Vec::new();
        while out.len() < GZIP_BLOCK_SIZE * 7 / 2 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            out.extend_from_slice(words[(state % words.len() as u64) as usize]);
        }
        out
    }

    fn compress(data: &[u8], compression: Compression, threads: usize) -> Vec<u8> {
        let mut compressor = Compressor::new(Vec::new(), compression, threads).unwrap();
        // Odd write sizes, so block boundaries fall inside writes.
        for chunk in data.chunks(77_777) {
            compressor.write_all(chunk).unwrap();
        }
        compressor.finish().unwrap()
    }

    #[test]
    fn gzip_bytes_do_not_depend_on_the_thread_count() {
        let data = sample();
        let one = compress(&data, Compression::Gzip, 1);
        for threads in [2, 3, 8] {
            assert!(one == compress(&data, Compression::Gzip, threads), "{threads} threads");
        }
        let mut round_trip = Vec::new();
        decoder(&one[..], Compression::Gzip).unwrap().read_to_end(&mut round_trip).unwrap();
        assert!(round_trip == data);
    }

    #[test]
    fn gzip_members_have_a_fixed_header() {
        let out = compress(b"hello", Compression::Gzip, 4);
        // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=255 (unknown): no time, no host.
        assert_eq!(&out[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
        let empty = compress(b"", Compression::Gzip, 4);
        let mut round_trip = Vec::new();
        decoder(&empty[..], Compression::Gzip).unwrap().read_to_end(&mut round_trip).unwrap();
        assert!(round_trip.is_empty());
    }

    #[test]
    fn every_compression_round_trips() {
        let data = sample();
        for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
            let out = compress(&data, compression, 2);
            let mut round_trip = Vec::new();
            decoder(&out[..], compression).unwrap().read_to_end(&mut round_trip).unwrap();
            assert!(round_trip == data, "{compression}");
            assert_eq!(Compression::from_media_type(compression.media_type()), Some(compression));
            assert_eq!(compression.to_string().parse::<Compression>().unwrap(), compression);
        }
    }
}
