package service

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/orderflow/orderflow/internal/platform/config"
)

// clientTLS reads <PREFIX>_TLS_ENABLE and its files: nil when TLS is off (the loopback default).
func clientTLS(e *config.Env, prefix, what string) *tls.Config {
	enable := e.Bool(prefix+"_TLS_ENABLE", false, "Connect to "+what+" over TLS.")
	ca := e.String(prefix+"_TLS_CA_FILE", "", "PEM CA bundle that signs "+what+"'s certificate (empty: the system roots).")
	cert := e.String(prefix+"_TLS_CERT_FILE", "", "Client certificate (PEM) for mutual TLS with "+what+" (with "+prefix+"_TLS_KEY_FILE).")
	key := e.String(prefix+"_TLS_KEY_FILE", "", "Client private key (PEM) for mutual TLS with "+what+".")
	if !enable {
		e.Check(ca == "" && cert == "" && key == "", "%s_TLS_* files are set but %s_TLS_ENABLE is false", prefix, prefix)
		return nil
	}
	t, err := loadTLS(ca, cert, key)
	e.Check(err == nil, "%s TLS: %v", prefix, err)
	return t
}

func loadTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile) //nolint:gosec // the operator names the CA file
		if err != nil {
			return nil, err
		}
		t.RootCAs = x509.NewCertPool()
		if !t.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("a client certificate needs both the certificate and the key file")
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		t.Certificates = []tls.Certificate{pair}
	}
	return t, nil
}

// kafkaSASL reads KAFKA_SASL_*: nil when no mechanism is set.
func kafkaSASL(e *config.Env) sasl.Mechanism {
	mech := e.String("KAFKA_SASL_MECHANISM", "", "Kafka SASL mechanism: SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN (use PLAIN only with TLS); empty: none.")
	user := e.String("KAFKA_SASL_USERNAME", "", "Kafka SASL user.")
	pass := e.Secret("KAFKA_SASL_PASSWORD", "", "Kafka SASL password (or KAFKA_SASL_PASSWORD_FILE).")
	switch mech {
	case "":
		return nil
	case "SCRAM-SHA-512":
		return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()
	case "SCRAM-SHA-256":
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()
	case "PLAIN":
		return plain.Auth{User: user, Pass: pass}.AsMechanism()
	}
	e.Check(false, "KAFKA_SASL_MECHANISM must be SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN, not %q", mech)
	return nil
}
