// `import text from './file?raw'`: the file's text (Vite's spelling, so vitest loads it as is;
// scripts/build.mjs gives esbuild the same meaning with its text loader).
declare module '*?raw' {
  const text: string;
  export default text;
}
