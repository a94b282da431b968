//! The crypto floor: the CPU cost of the server's share of one full mTLS
//! handshake (TLS 1.3, X25519, ECDSA P-256 on both sides), for each rustls
//! crypto provider, called through rustls' own provider interfaces:
//!
//! - one X25519 exchange (`start_and_complete`: the server's key pair and
//!   the shared secret with the client's share),
//! - one ECDSA P-256 SHA-256 signature (the server's CertificateVerify),
//! - two ECDSA P-256 SHA-256 verifications (the client's CertificateVerify
//!   and the CA's signature on the client certificate).
//!
//! `server_share` runs all four in a row; scripts/bench.sh reads its median
//! from target/criterion. Times are CPU time of the benchmark thread
//! (support/cpu_time.rs), like the server CPU time they are compared with.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

#[path = "support/cpu_time.rs"]
mod cpu_time;
use cpu_time::ThreadCpuTime;
use mtls_bench::Provider;
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::pki_types::{
    PrivateKeyDer, PrivatePkcs8KeyDer, SignatureVerificationAlgorithm, alg_id,
};
use rustls::sign::Signer;
use rustls::{NamedGroup, SignatureScheme};

/// What TLS 1.3 signs in CertificateVerify: 64 spaces, a context string, a
/// zero byte and a SHA-256 transcript hash (130 bytes).
fn certificate_verify_message() -> Vec<u8> {
    let mut message = vec![b' '; 64];
    message.extend_from_slice(b"TLS 1.3, server CertificateVerify\0");
    message.extend_from_slice(&[0x5a; 32]);
    message
}

/// The pieces of one provider, prepared outside the timed loops.
struct Floor {
    x25519: &'static dyn SupportedKxGroup,
    client_share: Vec<u8>,
    signer: Box<dyn Signer>,
    verifier: &'static dyn SignatureVerificationAlgorithm,
    public_key: Vec<u8>,
    message: Vec<u8>,
    signature: Vec<u8>,
}

impl Floor {
    fn new(provider: &CryptoProvider) -> Self {
        let x25519 = *provider
            .kx_groups
            .iter()
            .find(|group| group.name() == NamedGroup::X25519)
            .expect("the provider has X25519");
        let client_share = x25519.start().expect("X25519 key pair").pub_key().to_vec();

        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("P-256 key");
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signer = provider
            .key_provider
            .load_private_key(der)
            .expect("the provider loads a P-256 key")
            .choose_scheme(&[SignatureScheme::ECDSA_NISTP256_SHA256])
            .expect("the key signs with ECDSA P-256 SHA-256");
        let verifier = provider
            .signature_verification_algorithms
            .mapping
            .iter()
            .find(|(scheme, _)| *scheme == SignatureScheme::ECDSA_NISTP256_SHA256)
            .and_then(|(_, algorithms)| {
                algorithms
                    .iter()
                    .find(|alg| alg.public_key_alg_id() == alg_id::ECDSA_P256)
            })
            .copied()
            .expect("the provider verifies ECDSA P-256 SHA-256");
        let message = certificate_verify_message();
        let signature = signer.sign(&message).expect("sign");
        let floor = Floor {
            x25519,
            client_share,
            signer,
            verifier,
            public_key: key.public_key_raw().to_vec(),
            message,
            signature,
        };
        // Measure only operations that succeed.
        floor.exchange();
        floor.verify();
        floor
    }

    fn exchange(&self) {
        let completed = self
            .x25519
            .start_and_complete(&self.client_share)
            .expect("X25519");
        black_box(completed);
    }

    fn sign(&self) {
        black_box(self.signer.sign(black_box(&self.message)).expect("sign"));
    }

    fn verify(&self) {
        self.verifier
            .verify_signature(
                black_box(&self.public_key),
                black_box(&self.message),
                black_box(&self.signature),
            )
            .expect("the signature verifies");
    }

    fn server_share(&self) {
        self.exchange();
        self.sign();
        self.verify();
        self.verify();
    }
}

fn crypto_floor(c: &mut Criterion<ThreadCpuTime>) {
    let mut group = c.benchmark_group("crypto_floor");
    for provider in [Provider::Ring, Provider::AwsLcRs] {
        let floor = Floor::new(&provider.crypto());
        let name = provider.name();
        group.bench_function(format!("{name}/x25519"), |b| b.iter(|| floor.exchange()));
        group.bench_function(format!("{name}/ecdsa_p256_sign"), |b| {
            b.iter(|| floor.sign())
        });
        group.bench_function(format!("{name}/ecdsa_p256_verify"), |b| {
            b.iter(|| floor.verify())
        });
        group.bench_function(format!("{name}/server_share"), |b| {
            b.iter(|| floor.server_share())
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = crypto_floor
}
criterion_main!(benches);
