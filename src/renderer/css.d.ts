// Vite bundles CSS a module imports (the terminal imports xterm.js's stylesheet).
declare module '*.css';
