console.log('nixvm: not yet');
