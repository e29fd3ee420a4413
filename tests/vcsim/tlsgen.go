package main

// Start-up TLS material: a throw-away CA and a leaf certificate for the
// loopback addresses, signed by that CA. The leaf is an end-entity
// certificate (BasicConstraints CA:FALSE, EKU serverAuth) so that
// rustls/webpki accepts it; the CA is written to a PEM file for the client's
// trust store.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"
)

type tlsMaterial struct {
	caPEM          []byte // what a client should trust: the CA, or the server certificate itself when self-signed
	leaf           tls.Certificate
	thumbprint256  string // SHA-256 of the leaf DER, "AB:CD:..."
	thumbprintSHA1 string // SHA-1 of the leaf DER, same format (what older vSphere tooling shows)
	leafPEM        []byte // the leaf certificate (PEM), as HostSystem.config.certificate reports it

	// The CA that signed the leaf (nil for self-signed profiles): host
	// endpoints get leaves of their own from it.
	caCert *x509.Certificate
	caKey  crypto.Signer
}

func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 126)
	n, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return nil, err
	}
	return n.Add(n, big.NewInt(1)), nil // strictly positive
}

func colonHex(sum []byte) string {
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// TLS profiles (--tls): the server material and protocol range old or odd vSphere hosts present.
const (
	// A leaf signed by a throw-away CA (the default).
	tlsCASigned = "ca-signed"
	// A self-signed certificate that is also a CA (CA:TRUE), as `openssl req -x509` makes and many ESXi
	// hosts present; it is its own trust anchor (written as the CA file).
	tlsSelfSignedCA = "self-signed-ca"
	// A self-signed RSA-1024 certificate, the ESX/ESXi 5.x-era default.
	tlsRSA1024 = "rsa1024"
	// The default material, offered over TLS 1.0 only (ESX 4.x, ESXi before 5.5 U3).
	tlsTLS10 = "tls10"
	// A CA-signed leaf that expired yesterday.
	tlsExpired = "expired"
)

// tlsVersions gives the protocol range a profile serves.
func tlsVersions(profile string) (min, max uint16) {
	if profile == tlsTLS10 {
		return tls.VersionTLS10, tls.VersionTLS10
	}
	return tls.VersionTLS12, 0
}

// generateSelfSigned makes one certificate that is both the server's and the trust anchor.
func generateSelfSigned(key crypto.Signer, isCA bool) (*tlsMaterial, error) {
	now := time.Now()
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "localhost", Organization: []string{"vmha tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  isCA,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, key.Public(), key)
	if err != nil {
		return nil, err
	}
	s256 := sha256.Sum256(der)
	s1 := sha1.Sum(der)
	return &tlsMaterial{
		caPEM:          pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		leafPEM:        pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		leaf:           tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		thumbprint256:  colonHex(s256[:]),
		thumbprintSHA1: colonHex(s1[:]),
	}, nil
}

// generateTLSProfile makes the material for one --tls profile.
func generateTLSProfile(profile string) (*tlsMaterial, error) {
	switch profile {
	case tlsCASigned, tlsTLS10:
		return generateTLS(0)
	case tlsExpired:
		return generateTLS(-8 * 24 * time.Hour)
	case tlsSelfSignedCA:
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		return generateSelfSigned(key, true)
	case tlsRSA1024:
		key, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			return nil, err
		}
		return generateSelfSigned(key, false)
	}
	return nil, fmt.Errorf("unknown --tls %q (want %s, %s, %s, %s or %s)", profile, tlsCASigned, tlsSelfSignedCA, tlsRSA1024, tlsTLS10, tlsExpired)
}

// generateTLS makes a CA and a leaf it signs; shift moves the leaf's validity (negative: already expired).
func generateTLS(shift time.Duration) (*tlsMaterial, error) {
	now := time.Now()

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caSerial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	caTemplate := &x509.Certificate{
		SerialNumber:          caSerial,
		Subject:               pkix.Name{CommonName: "vmha vcsim test CA", Organization: []string{"vmha tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}

	mat := &tlsMaterial{
		caPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		caCert: caCert,
		caKey:  caKey,
	}
	if err := mat.issueLeaf(shift); err != nil {
		return nil, err
	}
	return mat, nil
}

// issueLeaf makes a new loopback leaf signed by the material's CA and makes
// it the material's leaf; shift moves its validity (negative: expired).
func (m *tlsMaterial) issueLeaf(shift time.Duration) error {
	if m.caCert == nil {
		return errors.New("no CA to sign a leaf with")
	}
	now := time.Now()
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	leafSerial, err := randomSerial()
	if err != nil {
		return err
	}
	leafTemplate := &x509.Certificate{
		SerialNumber:          leafSerial,
		Subject:               pkix.Name{CommonName: "localhost", Organization: []string{"vmha tests"}},
		NotBefore:             now.Add(-time.Hour + shift),
		NotAfter:              now.Add(7*24*time.Hour + shift),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTemplate, m.caCert, &leafKey.PublicKey, m.caKey)
	if err != nil {
		return err
	}
	s256 := sha256.Sum256(leafDER)
	s1 := sha1.Sum(leafDER)
	m.leaf = tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}
	m.leafPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER})
	m.thumbprint256 = colonHex(s256[:])
	m.thumbprintSHA1 = colonHex(s1[:])
	return nil
}

// hostMaterial is the TLS material of one host endpoint: a leaf of its own
// from the same CA (so ca_file trusts it), or for the self-signed profiles
// a self-signed certificate of the same kind.
func hostMaterial(profile string, vc *tlsMaterial) (*tlsMaterial, error) {
	if vc.caCert == nil {
		return generateTLSProfile(profile)
	}
	m := &tlsMaterial{caPEM: vc.caPEM, caCert: vc.caCert, caKey: vc.caKey}
	shift := time.Duration(0)
	if profile == tlsExpired {
		shift = -8 * 24 * time.Hour
	}
	if err := m.issueLeaf(shift); err != nil {
		return nil, err
	}
	return m, nil
}
