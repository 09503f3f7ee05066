"use strict";(self.rspackChunkenvmgr_launcher=self.rspackChunkenvmgr_launcher||[]).push([[232],{475(r,e,n){var t=n(601),o=n.n(t),a=n(314),i=(n.n(a))()(o());i.push([r.id,`/* envmgr kernel cards: a stock launcher card plus a console link. */

.envmgr-Kernel {
  display: flex;
  flex-direction: column;
  margin: 8px;
}

.envmgr-Kernel > .jp-LauncherCard {
  margin: 0;
}

.envmgr-Badge {
  display: block;
  width: fit-content;
  margin: 4px auto 0;
  padding: 0 6px;
  border-radius: 8px;
  font-size: var(--jp-ui-font-size0);
  line-height: 1.5;
  color: var(--jp-ui-font-color1);
  background: var(--jp-layout-color2);
  border: 1px solid var(--jp-border-color1);
}

.envmgr-Badge-latest {
  color: var(--jp-ui-inverse-font-color1);
  background: var(--jp-brand-color1);
  border-color: var(--jp-brand-color1);
}

.envmgr-KernelLink {
  display: flex;
  align-items: center;
  justify-content: center;
  gap: 4px;
  box-sizing: border-box;
  width: 100%;
  margin-top: 4px;
  padding: 2px 0;
  cursor: pointer;
  font-size: var(--jp-ui-font-size0);
  color: var(--jp-ui-font-color1);
  background: var(--jp-layout-color0);
  border: 1px solid var(--jp-border-color2);
  border-radius: var(--jp-border-radius);
}

.envmgr-KernelLink:hover {
  background: var(--jp-layout-color2);
}

.envmgr-Folded {
  margin-top: 4px;
}

.envmgr-Folded > summary {
  margin-left: 5px;
  cursor: pointer;
  color: var(--jp-ui-font-color2);
  font-size: var(--jp-ui-font-size1);
}
`,""]),n.d(e,{},{A:i})},314(r){r.exports=function(r){var e=[];return e.toString=function(){return this.map(function(e){var n="",t=void 0!==e[5];return e[4]&&(n+="@supports (".concat(e[4],") {")),e[2]&&(n+="@media ".concat(e[2]," {")),t&&(n+="@layer".concat(e[5].length>0?" ".concat(e[5]):""," {")),n+=r(e),t&&(n+="}"),e[2]&&(n+="}"),e[4]&&(n+="}"),n}).join("")},e.i=function(r,n,t,o,a){"string"==typeof r&&(r=[[null,r,void 0]]);var i={};if(t)for(var c=0;c<this.length;c++){var s=this[c][0];null!=s&&(i[s]=!0)}for(var l=0;l<r.length;l++){var u=[].concat(r[l]);t&&i[u[0]]||(void 0!==a&&(void 0===u[5]||(u[1]="@layer".concat(u[5].length>0?" ".concat(u[5]):""," {").concat(u[1],"}")),u[5]=a),n&&(u[2]&&(u[1]="@media ".concat(u[2]," {").concat(u[1],"}")),u[2]=n),o&&(u[4]?(u[1]="@supports (".concat(u[4],") {").concat(u[1],"}"),u[4]=o):u[4]="".concat(o)),e.push(u))}},e}},601(r){r.exports=function(r){return r[1]}},72(r){var e=[];function n(r){for(var n=-1,t=0;t<e.length;t++)if(e[t].identifier===r){n=t;break}return n}function t(r,t){for(var o={},a=[],i=0;i<r.length;i++){var c=r[i],s=t.base?c[0]+t.base:c[0],l=o[s]||0,u="".concat(s," ").concat(l);o[s]=l+1;var p=n(u),d={css:c[1],media:c[2],sourceMap:c[3],supports:c[4],layer:c[5]};if(-1!==p)e[p].references++,e[p].updater(d);else{var f=function(r,e){var n=e.domAPI(e);return n.update(r),function(e){e?(e.css!==r.css||e.media!==r.media||e.sourceMap!==r.sourceMap||e.supports!==r.supports||e.layer!==r.layer)&&n.update(r=e):n.remove()}}(d,t);t.byIndex=i,e.splice(i,0,{identifier:u,updater:f,references:1})}a.push(u)}return a}r.exports=function(r,o){var a=t(r=r||[],o=o||{});return function(r){r=r||[];for(var i=0;i<a.length;i++){var c=n(a[i]);e[c].references--}for(var s=t(r,o),l=0;l<a.length;l++){var u=n(a[l]);0===e[u].references&&(e[u].updater(),e.splice(u,1))}a=s}}},659(r){var e={};r.exports=function(r,n){var t=function(r){if(void 0===e[r]){var n=document.querySelector(r);if(window.HTMLIFrameElement&&n instanceof window.HTMLIFrameElement)try{n=n.contentDocument.head}catch(r){n=null}e[r]=n}return e[r]}(r);if(!t)throw Error("Couldn't find a style target. This probably means that the value for the 'insert' parameter is invalid.");t.appendChild(n)}},540(r){r.exports=function(r){var e=document.createElement("style");return r.setAttributes(e,r.attributes),r.insert(e,r.options),e}},56(r,e,n){r.exports=function(r){var e=n.nc;e&&r.setAttribute("nonce",e)}},825(r){r.exports=function(r){if("u"<typeof document)return{update:function(){},remove:function(){}};var e=r.insertStyleElement(r);return{update:function(n){var t,o,a;t="",n.supports&&(t+="@supports (".concat(n.supports,") {")),n.media&&(t+="@media ".concat(n.media," {")),(o=void 0!==n.layer)&&(t+="@layer".concat(n.layer.length>0?" ".concat(n.layer):""," {")),t+=n.css,o&&(t+="}"),n.media&&(t+="}"),n.supports&&(t+="}"),(a=n.sourceMap)&&"u">typeof btoa&&(t+="\n/*# sourceMappingURL=data:application/json;base64,".concat(btoa(unescape(encodeURIComponent(JSON.stringify(a))))," */")),r.styleTagTransform(t,e,r.options)},remove:function(){var r;null===(r=e).parentNode||r.parentNode.removeChild(r)}}}},113(r){r.exports=function(r,e){if(e.styleSheet)e.styleSheet.cssText=r;else{for(;e.firstChild;)e.removeChild(e.firstChild);e.appendChild(document.createTextNode(r))}}},579(r,e,n){var t=n(72),o=n.n(t),a=n(825),i=n.n(a),c=n(659),s=n.n(c),l=n(56),u=n.n(l),p=n(540),d=n.n(p),f=n(113),v=n.n(f),m=n(475),g={};g.styleTagTransform=v(),g.setAttributes=u(),g.insert=s().bind(null,"head"),g.domAPI=i(),g.insertStyleElement=d(),o()(m.A,g),m.A&&m.A.locals&&m.A.locals}}]);