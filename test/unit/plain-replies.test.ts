import { expect } from 'chai';
import { PlainReplies } from '../../server/plain-replies';

describe('PlainReplies', function () {
  it('answers in the order of the lines, whatever order the tasks settle in', function () {
    const replies = new PlainReplies();
    replies.expect('t1');
    replies.expect('t2');
    expect(replies.answer('error: busy'), 'waits behind t1 and t2').to.equal('');
    replies.expect('t3');
    expect(replies.settle('t2', () => 'two')).to.equal('');
    expect(replies.settle('t3', () => 'three')).to.equal('');
    expect(replies.settle('t1', () => 'one')).to.equal('one\ntwo\nerror: busy\nthree\n');
    expect(replies.answer('now')).to.equal('now\n');
  });

  it("knows only its own tasks: another request's is left to the caller", function () {
    const replies = new PlainReplies();
    let asked = false;
    expect(replies.settle('json-task', () => ((asked = true), 'x'))).to.equal(undefined);
    expect(asked, 'the text is not made for a task that is not plain').to.equal(false);
    replies.expect('t1');
    expect(replies.settle('t1', () => 'one')).to.equal('one\n');
    expect(replies.settle('t1', () => 'again'), 'settled once').to.equal(undefined);
  });
});
