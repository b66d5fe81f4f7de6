package actors

import "testing"

// TestFetchIntoStaysLocal: the memory a fetch may be read into is not sent to another node: the
// envelope of a Fetch carries neither its bytes nor the field.
func TestFetchIntoStaysLocal(t *testing.T) {
	env, err := Wrap(&Fetch{Offset: 7, MaxBytes: 1 << 20, Into: make([]byte, 1<<20)})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(env.GetValue()); n > 64 {
		t.Fatalf("the envelope of a Fetch with 1 MiB to read into holds %d bytes", n)
	}
	m, err := Unwrap(env)
	if err != nil {
		t.Fatal(err)
	}
	f, ok := m.(*Fetch)
	if !ok || f.Offset != 7 || f.MaxBytes != 1<<20 || f.Into != nil {
		t.Fatalf("unwrapped %#v", m)
	}
}
