import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { packageVersion } from '../../shared/version';

const ROOT = path.resolve(__dirname, '..', '..');

describe('package version (shared/version.ts)', function () {
  const expected = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

  it('finds package.json from the source folder (ts-node) and from the compiled one (dist/shared)', function () {
    expect(packageVersion()).to.equal(expected);
    expect(packageVersion(path.join(ROOT, 'dist', 'shared'))).to.equal(expected);
    expect(packageVersion(path.join(ROOT, 'dist', 'client'))).to.equal(expected);
  });

  it('says "unknown" rather than throwing when there is no package.json of Ronda above', function () {
    expect(packageVersion('/')).to.equal('unknown');
  });
});
