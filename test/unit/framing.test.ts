import { expect } from 'chai';
import { LineSplitter, type Line } from '../../shared/framing';

const text = (value: string): Line => ({ ok: true, text: value });

describe('LineSplitter', function () {
  it('joins a line split across chunks', function () {
    const splitter = new LineSplitter();
    expect(splitter.push(Buffer.from('hel'))).to.deep.equal([]);
    expect(splitter.push(Buffer.from('lo wor'))).to.deep.equal([]);
    expect(splitter.push(Buffer.from('ld\nnext'))).to.deep.equal([text('hello world')]);
    expect(splitter.buffered).to.equal(4);
  });

  it('returns several lines from one chunk, in order, and drops a trailing CR', function () {
    const splitter = new LineSplitter();
    expect(splitter.push(Buffer.from('a\nb\r\n\nc\n'))).to.deep.equal([text('a'), text('b'), text(''), text('c')]);
    expect(splitter.buffered).to.equal(0);
  });

  it('keeps a multi-byte character split between chunks intact', function () {
    const splitter = new LineSplitter();
    const bytes = Buffer.from('año ñandú\n');
    expect(splitter.push(bytes.subarray(0, 2))).to.deep.equal([]);
    expect(splitter.push(bytes.subarray(2))).to.deep.equal([text('año ñandú')]);
  });

  it('reports invalid UTF-8 and goes on with the next line', function () {
    const splitter = new LineSplitter();
    const chunk = Buffer.concat([Buffer.from([0x61, 0xff, 0xfe, 0x0a]), Buffer.from('ok\n')]);
    expect(splitter.push(chunk)).to.deep.equal([{ ok: false, code: 'BAD_UTF8' }, text('ok')]);
  });

  it('reports a line over the limit once, skips it, and reads the next one', function () {
    const splitter = new LineSplitter(8);
    expect(splitter.push(Buffer.from('12345'))).to.deep.equal([]);
    expect(splitter.push(Buffer.from('6789'))).to.deep.equal([{ ok: false, code: 'LINE_TOO_LONG' }]);
    expect(splitter.push(Buffer.from('more of the long line'))).to.deep.equal([]);
    expect(splitter.push(Buffer.from('tail\nshort\n'))).to.deep.equal([text('short')]);
  });

  it('reports a complete line over the limit within one chunk', function () {
    const splitter = new LineSplitter(4);
    expect(splitter.push(Buffer.from('12345\nabcd\n'))).to.deep.equal([
      { ok: false, code: 'LINE_TOO_LONG' },
      text('abcd'),
    ]);
  });

  it('counts the limit without the newline, CRLF or LF alike, also split across chunks', function () {
    const splitter = new LineSplitter(8);
    expect(splitter.push(Buffer.from('12345678\r\n12345678\n'))).to.deep.equal([text('12345678'), text('12345678')]);
    expect(splitter.push(Buffer.from('12345678\r'))).to.deep.equal([]);
    expect(splitter.push(Buffer.from('\n'))).to.deep.equal([text('12345678')]);
    expect(splitter.push(Buffer.from('1234567'))).to.deep.equal([]);
    expect(splitter.push(Buffer.from('8\r\n'))).to.deep.equal([text('12345678')]);
    expect(splitter.push(Buffer.from('123456789\r\n'))).to.deep.equal([{ ok: false, code: 'LINE_TOO_LONG' }]);
    // A CR that is not followed by the newline is part of the line, and makes it too long.
    expect(splitter.push(Buffer.from('12345678\r'))).to.deep.equal([]);
    expect(splitter.push(Buffer.from('x\nok\n'))).to.deep.equal([{ ok: false, code: 'LINE_TOO_LONG' }, text('ok')]);
  });

  it('flushes unterminated bytes as a line of their own', function () {
    const splitter = new LineSplitter();
    splitter.push(Buffer.from('tarea1'));
    expect(splitter.firstBufferedByte).to.equal('t'.charCodeAt(0));
    expect(splitter.flush()).to.deep.equal(text('tarea1'));
    expect(splitter.flush()).to.equal(undefined);
    expect(splitter.buffered).to.equal(0);
  });

  it('does not keep a reference to the chunk it was given', function () {
    const splitter = new LineSplitter();
    const chunk = Buffer.from('abc');
    splitter.push(chunk);
    chunk.fill(0x7a);
    expect(splitter.push(Buffer.from('\n'))).to.deep.equal([text('abc')]);
  });
});
