// Command vectors2pcap writes calc's wire test vectors
// (testdata/wire/vectors.json) as pcap files of synthetic loopback TCP
// connections, for the Wireshark dissector's golden tests
// (tools/wireshark/test.sh):
//
//   - vectors.pcap: one connection per vector, its bytes sent by the client
//     or, for a vector of frames only servers send, by the server, cut into
//     segments of -mss bytes so that frames cross segment boundaries;
//   - session.pcap: one connection carrying a plausible conversation built
//     from the vectors (preface, SETTINGS, calls, their answers, a stream,
//     PING, GOAWAY), each vector in one segment, so that answers follow their
//     calls and several frames share a segment;
//   - malformed.pcap: one connection per malformed frame that the vectors do
//     not cover (bad varints, a header running past its payload, bad control
//     payloads), each after a valid preface;
//   - snappy.pcap: one connection of Evaluate calls whose snappy blocks use
//     encodings Go's encoder never emits (literals with 1- and 2-byte
//     lengths, copies with 4-byte offsets), each decoding to the same
//     EvaluateRequest.
//
// Every connection runs between 127.0.0.1 ports 51000 and up and 127.0.0.1
// port 4000, with a handshake, an ACK for each data segment and fixed
// timestamps, so the files are the same on every run.
//
//	go run ./tools/wireshark/vectors2pcap -vectors testdata/wire/vectors.json -out DIR
package main

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// vector is the part of a test vector this command uses.
type vector struct {
	Name    string `json:"name"`
	Hex     string `json:"hex"`
	Preface bool   `json:"preface"`
	Frames  []struct {
		Kind string `json:"kind"`
	} `json:"frames"`
}

// serverKinds are the frame kinds only a server sends.
var serverKinds = map[string]bool{"SETTINGS": true, "RESPONSE": true, "STATUS": true, "GOAWAY": true}

// fromServer reports whether v's bytes are the server's: some frame of it is
// of a kind only servers send.
func (v vector) fromServer() bool {
	for _, f := range v.Frames {
		if serverKinds[f.Kind] {
			return true
		}
	}
	return false
}

// session is the conversation of session.pcap: vector names in order, each
// sent by its own side.
var session = []string{
	"preface", "settings", "calculate_pipelined", "calculate_response", "status_division_by_zero",
	"evaluate_compressed", "calculate_metadata", "stream_client", "stream_server", "ping_pong_cancel", "goaway",
}

// malformed are REQUEST, SETTINGS, GOAWAY and PING frames whose payload is
// malformed in ways the vectors do not cover; each is sent after a preface.
var malformed = []struct{ name, hex string }{
	{"method_ref_bad_varint", "00000011" + "0200" + "00000001" + "ffffffffffffffffffff" + "01"},
	{"method_ref_zero", "00000008" + "0200" + "00000001" + "00" + "08"},
	{"method_name_past_payload", "0000000a" + "0202" + "00000001" + "01" + "2a" + "2f63"},
	{"header_truncated", "00000006" + "0206" + "00000001"},
	{"metadata_past_payload", "0000000b" + "0208" + "00000001" + "01" + "01" + "03" + "6b6b"},
	{"settings_odd_payload", "0000000b" + "0100" + "00000000" + "0001004040"},
	{"goaway_short", "00000008" + "0a00" + "00000000" + "0000"},
	{"ping_too_long", fmt.Sprintf("%08x", 6+65) + "0800" + "00000000" + fmt.Sprintf("%0130x", 0)},
	{"snappy_copy_before_start", "0000000a" + "0201" + "00000001" + "01" + "05" + "0901"},
	{"corrupt_status", "0000000a" + "0600" + "00000001" + "0aff" + "ffff"},
}

func main() {
	vectorsPath := flag.String("vectors", "testdata/wire/vectors.json", "the wire test vectors")
	out := flag.String("out", ".", "directory to write vectors.pcap, session.pcap, malformed.pcap and snappy.pcap to")
	mss := flag.Int("mss", 32, "largest TCP segment of vectors.pcap")
	flag.Parse()
	if err := run(*vectorsPath, *out, *mss); err != nil {
		fmt.Fprintln(os.Stderr, "vectors2pcap:", err)
		os.Exit(1)
	}
}

func run(vectorsPath, out string, mss int) error {
	data, err := os.ReadFile(vectorsPath)
	if err != nil {
		return err
	}
	var file struct {
		Vectors []vector `json:"vectors"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		return fmt.Errorf("%s: %w", vectorsPath, err)
	}
	byName := map[string]vector{}
	for _, v := range file.Vectors {
		byName[v.Name] = v
	}
	preface, _ := hex.DecodeString("43414c4301")

	var all capture
	for i, v := range file.Vectors {
		b, err := hex.DecodeString(v.Hex)
		if err != nil {
			return fmt.Errorf("vector %s: %w", v.Name, err)
		}
		c := all.connect(uint16(51000 + i))
		c.send(!v.fromServer(), b, mss)
	}

	var conv capture
	c := conv.connect(51000)
	for _, name := range session {
		v, ok := byName[name]
		if !ok {
			return fmt.Errorf("session: no vector %q", name)
		}
		b, err := hex.DecodeString(v.Hex)
		if err != nil {
			return fmt.Errorf("vector %s: %w", v.Name, err)
		}
		c.send(!v.fromServer(), b, 1460)
	}

	var bad capture
	for i, m := range malformed {
		b, err := hex.DecodeString(m.hex)
		if err != nil {
			return fmt.Errorf("malformed %s: %w", m.name, err)
		}
		c := bad.connect(uint16(51000 + i))
		c.send(true, preface, 1460)
		c.send(b[4] != 0x01 && b[4] != 0x06 && b[4] != 0x0a, b, 1460)
	}

	var sn capture
	c = sn.connect(51000)
	c.send(true, preface, 1460)
	for _, b := range snappyRequests() {
		c.send(true, b, 1460)
	}

	for name, cp := range map[string]*capture{
		"vectors.pcap": &all, "session.pcap": &conv, "malformed.pcap": &bad, "snappy.pcap": &sn,
	} {
		if err := cp.write(filepath.Join(out, name)); err != nil {
			return err
		}
	}
	return nil
}

// snappyRequests returns three Evaluate REQUEST frames (the first binds
// method ref 1) whose messages are the same EvaluateRequest{expression:
// "1 + 1 + … + 1"} (101 bytes), each as a hand-made snappy block: one literal
// with a 1-byte length, one literal with a 2-byte length, and a 6-byte
// literal followed by overlapping copies with 4-byte offsets.
func snappyRequests() [][]byte {
	expr := strings.Repeat("1 + ", 25) + "1"
	msg := append([]byte{0x0a, byte(len(expr))}, expr...)
	n := byte(len(msg)) // 103: a one-byte uvarint
	blocks := [][]byte{
		append([]byte{n, 60 << 2, n - 1}, msg...),
		append([]byte{n, 61 << 2, n - 1, 0}, msg...),
		append(append([]byte{n, 5 << 2}, msg[:6]...),
			63<<2|3, 4, 0, 0, 0, // copy 64 bytes from 4 back
			32<<2|3, 4, 0, 0, 0), // copy 33 bytes from 4 back
	}
	name := "/calculator.v1.CalculatorService/Evaluate"
	var frames [][]byte
	for i, block := range blocks {
		flags := byte(0x01) // COMPRESSED
		payload := []byte{1}
		if i == 0 {
			flags |= 0x02 // METHOD_NAME
			payload = append(append(payload, byte(len(name))), name...)
		}
		payload = append(payload, block...)
		f := binary.BigEndian.AppendUint32(nil, uint32(6+len(payload)))
		f = append(f, 0x02, flags)
		f = binary.BigEndian.AppendUint32(f, uint32(i+1))
		frames = append(frames, append(f, payload...))
	}
	return frames
}

// capture is a sequence of packets with increasing timestamps.
type capture struct {
	packets [][]byte
}

// conn is one TCP connection of a capture between the client port and 4000.
type conn struct {
	cp                 *capture
	clientPort         uint16
	clientSeq, servSeq uint32
}

const serverPort = 4000

// TCP flags.
const (
	fin = 0x01
	syn = 0x02
	psh = 0x08
	ack = 0x10
)

// connect adds a three-way handshake from clientPort and returns the
// connection.
func (cp *capture) connect(clientPort uint16) *conn {
	c := &conn{cp: cp, clientPort: clientPort, clientSeq: 1000, servSeq: 5000}
	c.segment(true, syn, nil)
	c.clientSeq++
	c.segment(false, syn|ack, nil)
	c.servSeq++
	c.segment(true, ack, nil)
	return c
}

// send adds data from the client (or the server) in segments of at most mss
// bytes, each acknowledged by the peer.
func (c *conn) send(fromClient bool, data []byte, mss int) {
	for len(data) > 0 {
		n := min(len(data), mss)
		c.segment(fromClient, psh|ack, data[:n])
		if fromClient {
			c.clientSeq += uint32(n)
		} else {
			c.servSeq += uint32(n)
		}
		c.segment(!fromClient, ack, nil)
		data = data[n:]
	}
}

// segment adds one IPv4 TCP packet.
func (c *conn) segment(fromClient bool, flags byte, payload []byte) {
	src, dst := c.clientPort, uint16(serverPort)
	seq, ackNum := c.clientSeq, c.servSeq
	if !fromClient {
		src, dst = dst, src
		seq, ackNum = ackNum, seq
	}
	if flags&ack == 0 {
		ackNum = 0
	}
	tcp := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(tcp[0:], src)
	binary.BigEndian.PutUint16(tcp[2:], dst)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	binary.BigEndian.PutUint32(tcp[8:], ackNum)
	tcp[12] = 5 << 4
	tcp[13] = flags
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	tcp = append(tcp, payload...)

	ip := make([]byte, 20, 20+len(tcp))
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(tcp)))
	ip[8] = 64
	ip[9] = 6
	copy(ip[12:], []byte{127, 0, 0, 1})
	copy(ip[16:], []byte{127, 0, 0, 1})
	binary.BigEndian.PutUint16(ip[10:], checksum(ip, 0))

	pseudo := make([]byte, 0, 12)
	pseudo = append(pseudo, ip[12:20]...)
	pseudo = append(pseudo, 0, 6)
	pseudo = binary.BigEndian.AppendUint16(pseudo, uint16(len(tcp)))
	binary.BigEndian.PutUint16(tcp[16:], checksum(tcp, sum(pseudo)))

	c.cp.packets = append(c.cp.packets, append(ip, tcp...))
}

// sum is the ones' complement sum of b's 16-bit words.
func sum(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

// checksum is the Internet checksum of b, starting from the partial sum
// initial.
func checksum(b []byte, initial uint32) uint16 {
	s := initial + sum(b)
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// base is the timestamp of every capture's first packet; each next packet
// comes 1 ms later.
var base = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// linkTypeRaw is pcap's LINKTYPE_RAW: packets start with the IP header.
const linkTypeRaw = 101

// write writes the capture as a classic pcap file.
func (cp *capture) write(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := cp.writeTo(f); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

func (cp *capture) writeTo(w io.Writer) error {
	hdr := make([]byte, 24)
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], 262144)
	binary.LittleEndian.PutUint32(hdr[20:], linkTypeRaw)
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	for i, p := range cp.packets {
		t := base.Add(time.Duration(i) * time.Millisecond)
		rec := make([]byte, 16, 16+len(p))
		binary.LittleEndian.PutUint32(rec[0:], uint32(t.Unix()))
		binary.LittleEndian.PutUint32(rec[4:], uint32(t.Nanosecond()/1000))
		binary.LittleEndian.PutUint32(rec[8:], uint32(len(p)))
		binary.LittleEndian.PutUint32(rec[12:], uint32(len(p)))
		if _, err := w.Write(append(rec, p...)); err != nil {
			return err
		}
	}
	return nil
}
