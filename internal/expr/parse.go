package expr

import (
	"fmt"
	"unicode/utf8"
)

// An opcode is one step of a compiled expression.
type opcode uint8

const (
	opNum opcode = iota // push the literal s[pos:end]
	opNeg               // negate the top of the stack
	opAdd               // the binary operators pop two values and push one
	opSub
	opMul
	opDiv
	opRem
	opPow
)

// An instr is one step of an expression compiled to postfix order.
type instr struct {
	op  opcode
	pos int // offset of the literal or the binary operator
	end int // end offset of the literal, for opNum
}

// binaryOps maps binary operator characters to their opcodes.
var binaryOps = [...]opcode{
	'+': opAdd,
	'-': opSub,
	'*': opMul,
	'/': opDiv,
	'%': opRem,
	'^': opPow,
}

type tokenKind uint8

const (
	tokEOF tokenKind = iota
	tokNum
	tokOp // one of + - * / % ^
	tokLParen
	tokRParen
)

type token struct {
	kind tokenKind
	pos  int  // offset of the first byte
	end  int  // offset just past the last byte
	ch   byte // the operator, for tokOp
}

// A parser compiles an expression to postfix code by recursive
// descent:
//
//	expr    = term { ("+" | "-") term }
//	term    = factor { ("*" | "/" | "%") factor }
//	factor  = { "+" | "-" } power
//	power   = primary { "^" { "+" | "-" } primary }
//	primary = number | "(" expr ")"
//
// Signs and '^' chains are parsed by loops, so the parser recurses
// only through parentheses, whose nesting MaxDepth bounds.
type parser struct {
	s     string
	next  int   // offset of the next unread byte
	tok   token // the current token
	depth int   // nesting levels currently open
	code  []instr
}

// parse compiles s to postfix code.
func parse(s string) ([]instr, *Error) {
	p := &parser{s: s}
	if err := p.advance(); err != nil {
		return nil, err
	}
	if p.tok.kind == tokEOF {
		return nil, &Error{Kind: KindSyntax, Pos: len(s), Msg: "empty expression"}
	}
	if err := p.expr(); err != nil {
		return nil, err
	}
	if p.tok.kind == tokRParen {
		return nil, &Error{Kind: KindSyntax, Pos: p.tok.pos, Msg: "unbalanced ')'"}
	}
	if p.tok.kind != tokEOF {
		return nil, p.unexpected()
	}
	return p.code, nil
}

func (p *parser) expr() *Error {
	if err := p.term(); err != nil {
		return err
	}
	for p.tok.kind == tokOp && (p.tok.ch == '+' || p.tok.ch == '-') {
		if err := p.binary(p.term); err != nil {
			return err
		}
	}
	return nil
}

func (p *parser) term() *Error {
	if err := p.factor(); err != nil {
		return err
	}
	for p.tok.kind == tokOp && (p.tok.ch == '*' || p.tok.ch == '/' || p.tok.ch == '%') {
		if err := p.binary(p.factor); err != nil {
			return err
		}
	}
	return nil
}

// binary consumes the current operator token, parses its right
// operand with operand, and emits the operator.
func (p *parser) binary(operand func() *Error) *Error {
	op := p.tok
	if err := p.advance(); err != nil {
		return err
	}
	if err := operand(); err != nil {
		return err
	}
	p.emit(binaryOps[op.ch], op.pos)
	return nil
}

func (p *parser) factor() *Error {
	outer := p.depth
	neg, err := p.signs()
	if err != nil {
		return err
	}
	if err := p.power(); err != nil {
		return err
	}
	p.depth = outer
	if neg {
		p.emit(opNeg, 0)
	}
	return nil
}

// signs consumes a run of unary signs, opening one nesting level for
// each, and reports whether their product is negative. The caller
// closes the levels once it has parsed their operand.
func (p *parser) signs() (neg bool, err *Error) {
	for p.tok.kind == tokOp && (p.tok.ch == '+' || p.tok.ch == '-') {
		if err := p.open(); err != nil {
			return false, err
		}
		neg = neg != (p.tok.ch == '-')
		if err := p.advance(); err != nil {
			return false, err
		}
	}
	return neg, nil
}

// power parses a chain b0 ^ s1 b1 ^ s2 b2 ... , where each si is a run
// of signs, as b0 ^ (s1 (b1 ^ (s2 (b2 ...)))): '^' is right-associative
// and the signs of an exponent apply to the rest of the chain, so
// their nesting levels stay open until the chain ends.
func (p *parser) power() *Error {
	outer := p.depth
	if err := p.primary(); err != nil {
		return err
	}
	type link struct {
		pos int // offset of the '^'
		neg bool
	}
	var chain []link
	for p.tok.kind == tokOp && p.tok.ch == '^' {
		pos := p.tok.pos
		if err := p.advance(); err != nil {
			return err
		}
		neg, err := p.signs()
		if err != nil {
			return err
		}
		if err := p.primary(); err != nil {
			return err
		}
		chain = append(chain, link{pos, neg})
	}
	p.depth = outer
	for i := len(chain) - 1; i >= 0; i-- {
		if chain[i].neg {
			p.emit(opNeg, 0)
		}
		p.emit(opPow, chain[i].pos)
	}
	return nil
}

func (p *parser) primary() *Error {
	switch p.tok.kind {
	case tokNum:
		p.code = append(p.code, instr{op: opNum, pos: p.tok.pos, end: p.tok.end})
		return p.advance()
	case tokLParen:
		lparen := p.tok.pos
		if err := p.open(); err != nil {
			return err
		}
		if err := p.advance(); err != nil {
			return err
		}
		if err := p.expr(); err != nil {
			return err
		}
		switch p.tok.kind {
		case tokRParen:
		case tokEOF:
			return &Error{Kind: KindSyntax, Pos: lparen, Msg: "unbalanced '('"}
		default:
			return p.unexpected()
		}
		p.depth--
		return p.advance()
	case tokEOF:
		return &Error{Kind: KindSyntax, Pos: p.tok.pos, Msg: "expected a number"}
	}
	return p.unexpected()
}

// open opens a nesting level for the current token.
func (p *parser) open() *Error {
	if p.depth == MaxDepth {
		return &Error{
			Kind: KindTooDeep,
			Pos:  p.tok.pos,
			Msg:  fmt.Sprintf("nesting deeper than %d levels", MaxDepth),
		}
	}
	p.depth++
	return nil
}

func (p *parser) emit(op opcode, pos int) {
	p.code = append(p.code, instr{op: op, pos: pos})
}

// unexpected returns a syntax error for the current token, which is
// not at the end of the input.
func (p *parser) unexpected() *Error {
	msg := "unexpected number"
	if p.tok.kind != tokNum {
		msg = fmt.Sprintf("unexpected '%c'", p.s[p.tok.pos])
	}
	return &Error{Kind: KindSyntax, Pos: p.tok.pos, Msg: msg}
}

// advance reads the next token into p.tok.
func (p *parser) advance() *Error {
	s, i := p.s, p.next
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	if i == len(s) {
		p.tok = token{kind: tokEOF, pos: i, end: i}
		p.next = i
		return nil
	}
	start, c := i, s[i]
	var kind tokenKind
	switch c {
	case '+', '-', '*', '/', '%', '^':
		kind = tokOp
		i++
	case '(':
		kind = tokLParen
		i++
	case ')':
		kind = tokRParen
		i++
	default:
		digits := 0
		for i < len(s) && isDigit(s[i]) {
			i++
			digits++
		}
		if i < len(s) && s[i] == '.' {
			i++
			for i < len(s) && isDigit(s[i]) {
				i++
				digits++
			}
		}
		if digits == 0 {
			return unexpectedChar(s, start)
		}
		kind = tokNum
	}
	p.tok = token{kind: kind, pos: start, end: i, ch: c}
	p.next = i
	return nil
}

// unexpectedChar returns a syntax error for the character at s[i].
func unexpectedChar(s string, i int) *Error {
	r, size := utf8.DecodeRuneInString(s[i:])
	msg := fmt.Sprintf("unexpected character %q", r)
	if r == utf8.RuneError && size == 1 {
		msg = fmt.Sprintf("unexpected byte %#02x", s[i])
	}
	return &Error{Kind: KindSyntax, Pos: i, Msg: msg}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func isDigit(c byte) bool {
	return '0' <= c && c <= '9'
}
