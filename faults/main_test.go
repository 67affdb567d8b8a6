package faults

import (
	"crypto/rand"
	"crypto/rsa"
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/jobsd/jobsd/internal/pgtest"
	"github.com/jobsd/jobsd/internal/proctest"
)

// binary is jobsd: the one of this test run (proctest.Binary).
var binary string

// keyA and keyB are the issuer's signing keys (B for rotation and unknown kids).
var keyA, keyB *rsa.PrivateKey

const clientID = "faults-client"

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// Every test skips itself (proctest.SkipShort): no binary, no
		// database, no keys.
		os.Exit(m.Run())
	}
	var err error
	if binary, err = proctest.Binary(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, k := range []**rsa.PrivateKey{&keyA, &keyB} {
		if *k, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	os.Exit(pgtest.Main(m))
}
