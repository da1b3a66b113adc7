/*
 * tls_intercept.c - per-sandbox CA, minted host certificates, and the two TLS ends of an
 * intercepted connection (tls_intercept.h), on OpenSSL 3.
 *
 * Keys are P-256.  The CA is valid for a year with pathlen 0; a host certificate for a week,
 * backdated an hour for guests whose clock lags.  Host certificates share one key per proxy
 * process: what protects the guest's trust is the CA key, which stays on the host, mode 0600.
 * Both ends speak TLS 1.2 or 1.3 and offer only HTTP/1.1 (ALPN): the header rewrite reads
 * HTTP/1.x.
 */
#include "tls_intercept.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#define LEAF_CACHE	64
#define DAY		(24 * 3600L)

struct leaf {
	char host[256];
	X509 *cert;
};

struct tls_ca {
	X509 *cert;
	EVP_PKEY *key;
	EVP_PKEY *leaf_key;
	SSL_CTX *guest_ctx;
	pthread_mutex_t lock;
	struct leaf cache[LEAF_CACHE];
	unsigned next;
};

static int ssl_error(char *err, size_t errlen, const char *what)
{
	unsigned long e = ERR_get_error();

	snprintf(err, errlen, "%s: %s", what, e ? ERR_reason_error_string(e) : "failed");
	return -1;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return -1;
	ok = X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -1;
}

/* A certificate for cn with key's public half, valid from now-back to now+days. */
static X509 *new_cert(const char *cn, EVP_PKEY *key, long back, long days)
{
	X509 *cert = X509_new();
	unsigned char serial[16];
	BIGNUM *bn = NULL;

	if (!cert || RAND_bytes(serial, sizeof(serial)) != 1)
		goto fail;
	serial[0] &= 0x7f;		/* positive */
	bn = BN_bin2bn(serial, sizeof(serial), NULL);
	if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) ||
	    !X509_set_version(cert, 2) || !X509_gmtime_adj(X509_getm_notBefore(cert), -back) ||
	    !X509_gmtime_adj(X509_getm_notAfter(cert), days * DAY) ||
	    !X509_set_pubkey(cert, key) ||
	    !X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_UTF8,
					(const unsigned char *)cn, -1, -1, 0))
		goto fail;
	BN_free(bn);
	return cert;
fail:
	BN_free(bn);
	X509_free(cert);
	return NULL;
}

static int write_pem(const char *path, mode_t mode, X509 *cert, EVP_PKEY *key)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	int ok;

	if (!f) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	ok = cert ? PEM_write_X509(f, cert) : PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL,
								    NULL);
	return fclose(f) == 0 && ok ? 0 : -1;
}

int tls_make_ca(const char *dir, char *err, size_t errlen)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *cert = key ? new_cert("kiln sandbox CA", key, 3600, 365) : NULL;
	char path[4096];
	int r = -1;

	if (!cert || X509_set_issuer_name(cert, X509_get_subject_name(cert)) != 1 ||
	    add_ext(cert, cert, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
	    add_ext(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign") ||
	    add_ext(cert, cert, NID_subject_key_identifier, "hash") ||
	    !X509_sign(cert, key, EVP_sha256())) {
		ssl_error(err, errlen, "cannot make the CA");
		goto out;
	}
	snprintf(path, sizeof(path), "%s/ca.key", dir);
	if (write_pem(path, 0600, NULL, key)) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	snprintf(path, sizeof(path), "%s/ca.pem", dir);
	if (write_pem(path, 0644, cert, NULL)) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	r = 0;
out:
	X509_free(cert);
	EVP_PKEY_free(key);
	return r;
}

static SSL_CTX *new_ctx(const SSL_METHOD *method)
{
	SSL_CTX *ctx = SSL_CTX_new(method);

	if (ctx && !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* The guest may offer h2; we answer only HTTP/1.1, or no ALPN at all. */
static int select_http1(SSL *ssl, const unsigned char **out, unsigned char *outlen,
			const unsigned char *in, unsigned inlen, void *arg)
{
	static const unsigned char h1[] = "\x08http/1.1";

	(void)ssl;
	(void)arg;
	if (SSL_select_next_proto((unsigned char **)out, outlen, h1, sizeof(h1) - 1, in,
				  inlen) == OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_OK;
	return SSL_TLSEXT_ERR_NOACK;
}

struct tls_ca *tls_ca_load(const char *dir, char *err, size_t errlen)
{
	struct tls_ca *ca = calloc(1, sizeof(*ca));
	char path[4096];
	FILE *f;

	if (!ca) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&ca->lock, NULL);
	snprintf(path, sizeof(path), "%s/ca.pem", dir);
	if ((f = fopen(path, "re"))) {
		ca->cert = PEM_read_X509(f, NULL, NULL, NULL);
		fclose(f);
	}
	snprintf(path, sizeof(path), "%s/ca.key", dir);
	if ((f = fopen(path, "re"))) {
		ca->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		fclose(f);
	}
	if (!ca->cert || !ca->key || X509_check_private_key(ca->cert, ca->key) != 1) {
		snprintf(err, errlen, "%s: no CA (ca.pem and ca.key that belong together)", dir);
		goto fail;
	}
	ca->leaf_key = EVP_EC_gen("P-256");
	ca->guest_ctx = new_ctx(TLS_server_method());
	if (!ca->leaf_key || !ca->guest_ctx) {
		ssl_error(err, errlen, "TLS setup");
		goto fail;
	}
	SSL_CTX_set_alpn_select_cb(ca->guest_ctx, select_http1, NULL);
	return ca;
fail:
	X509_free(ca->cert);
	EVP_PKEY_free(ca->key);
	EVP_PKEY_free(ca->leaf_key);
	SSL_CTX_free(ca->guest_ctx);
	free(ca);
	return NULL;
}

static X509 *mint(struct tls_ca *ca, const char *host)
{
	/* A CN holds at most 64 characters; clients check the SAN, which holds the name. */
	X509 *cert = new_cert(strlen(host) <= 64 ? host : "kiln sandbox", ca->leaf_key, 3600, 7);
	char san[300];

	snprintf(san, sizeof(san), "DNS:%s", host);
	if (!cert || X509_set_issuer_name(cert, X509_get_subject_name(ca->cert)) != 1 ||
	    add_ext(cert, ca->cert, NID_basic_constraints, "critical,CA:FALSE") ||
	    add_ext(cert, ca->cert, NID_key_usage, "critical,digitalSignature") ||
	    add_ext(cert, ca->cert, NID_ext_key_usage, "serverAuth") ||
	    add_ext(cert, ca->cert, NID_subject_alt_name, san) ||
	    add_ext(cert, ca->cert, NID_authority_key_identifier, "keyid:always") ||
	    !X509_sign(cert, ca->key, EVP_sha256())) {
		X509_free(cert);
		return NULL;
	}
	return cert;
}

/* host's certificate, minted once; a new reference for the caller. */
static X509 *leaf_for(struct tls_ca *ca, const char *host)
{
	X509 *cert = NULL;

	pthread_mutex_lock(&ca->lock);
	for (unsigned i = 0; i < LEAF_CACHE && !cert; i++)
		if (ca->cache[i].cert && !strcmp(ca->cache[i].host, host))
			cert = ca->cache[i].cert;
	if (!cert && (cert = mint(ca, host))) {
		struct leaf *l = &ca->cache[ca->next++ % LEAF_CACHE];

		X509_free(l->cert);
		snprintf(l->host, sizeof(l->host), "%s", host);
		l->cert = cert;
	}
	if (cert)
		X509_up_ref(cert);
	pthread_mutex_unlock(&ca->lock);
	return cert;
}

SSL *tls_guest_side(struct tls_ca *ca, const char *host)
{
	X509 *cert = leaf_for(ca, host);
	SSL *ssl = cert ? SSL_new(ca->guest_ctx) : NULL;

	if (ssl && (SSL_use_certificate(ssl, cert) != 1 ||
		    SSL_use_PrivateKey(ssl, ca->leaf_key) != 1)) {
		SSL_free(ssl);
		ssl = NULL;
	}
	X509_free(cert);
	return ssl;
}

/* One client context for the process: loading the system roots takes milliseconds. */
static SSL_CTX *upstream_ctx(const char *upstream_ca)
{
	static const unsigned char h1[] = "\x08http/1.1";
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static SSL_CTX *ctx;
	SSL_CTX *made;

	pthread_mutex_lock(&lock);
	if (ctx)
		goto out;
	made = new_ctx(TLS_client_method());
	if (!made)
		goto out;
	SSL_CTX_set_verify(made, SSL_VERIFY_PEER, NULL);
	if ((upstream_ca ? SSL_CTX_load_verify_locations(made, upstream_ca, NULL) :
			   SSL_CTX_set_default_verify_paths(made)) != 1 ||
	    SSL_CTX_set_alpn_protos(made, h1, sizeof(h1) - 1)) {
		SSL_CTX_free(made);
		goto out;
	}
	ctx = made;
out:
	pthread_mutex_unlock(&lock);
	return ctx;
}

SSL *tls_upstream_side(const char *upstream_ca, const char *host)
{
	SSL_CTX *ctx = upstream_ctx(upstream_ca);
	SSL *ssl = ctx ? SSL_new(ctx) : NULL;

	if (ssl && (SSL_set_tlsext_host_name(ssl, host) != 1 || SSL_set1_host(ssl, host) != 1)) {
		SSL_free(ssl);
		ssl = NULL;
	}
	return ssl;
}
